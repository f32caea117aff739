"""The benchmark scripts refuse impossible settings with one sentence, exit 2, nothing written; what
they declare and what they share (mrharmony.bench) does what it says."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrharmony.bench import dmri_summary as summary
from mrharmony.bench.dmri import RECORDED, primary_choice, primary_name, train_dmri_run
from mrharmony.bench.plan import Plan, folds_of
from mrharmony.bench.record import mark_done, recorded_only, restore_record, save_record
from mrharmony.bench.timing import Timing, pauses_of

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A benchmark script as a module (its declarations), loaded from its file."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLAIMS = _script("dmri").CLAIMS


@pytest.mark.parametrize(
    "args, message",
    [
        (["--folds", "1"], "--folds must be at least 2, not 1."),
        (["--folds", "4"], "--folds 4 needs at least 4 subjects; the preset has 3."),
        (["--seeds", "1", "1"], "--seeds must be distinct non-negative integers."),
        (["--seed-folds", "4"], "--seed-folds must be between 1 and --folds (3), not 4."),
        (["--cohort", "3"], "--cohort needs at least 4 subjects (2 controls, 2 patients), not 3."),
        (["--preset", "huge"], "unknown --preset 'huge'; choose one of tiny, demo, mushac."),
    ],
)
def test_dmri_benchmark_refuses_impossible_settings(tmp_path, args, message):
    out = tmp_path / "bench"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dmri.py"), "--budget", "smoke", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"dmri.py: error: {message}"
    assert not out.exists()


def test_dmri_benchmark_refuses_a_record_that_is_no_folder_of_its_own(tmp_path):
    out, note = tmp_path / "bench", tmp_path / "note.txt"
    note.write_text("x\n")
    for record, message in [
        (note, f"--record {note} is not a folder."),
        (out, "--record must be a folder other than --out."),
    ]:
        r = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "dmri.py"),
                "--budget",
                "smoke",
                "--out",
                str(out),
                "--record",
                str(record),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.strip() == f"dmri.py: error: {message}"
        assert not out.exists()


def test_simulate_refuses_a_cohort_too_small(tmp_path):
    from mrharmony.cli import main

    assert main(["simulate", str(tmp_path / "c"), "--preset", "tiny", "--cohort", "2", "--quiet"]) == 2
    assert not (tmp_path / "c").exists()


def test_best_row_of_the_dmri_summary_is_chosen_among_rows_scored_on_every_subject():
    """A row trained on the first fold only (two subjects) is not the "best" of a test across
    subjects, however low its mean."""
    best_row = summary.best_row
    have = {
        "diqt": {"s1": 0.3, "s2": 0.3, "s3": 0.3},
        "msp": {"s1": 0.2, "s2": 0.4, "s3": 0.2},
        "diqt_widened": {"s1": 0.1, "s2": 0.1},
        "rish": {"s1": 0.5, "s2": 0.5, "s3": 0.5},
    }
    assert best_row(["diqt", "msp", "diqt_widened"], have) == "msp"
    assert best_row(["rish", "none"], have) == "rish"
    assert best_row(["none"], have) is None


def test_dmri_benchmark_timing_leaves_out_logged_pauses_and_keeps_a_killed_steps_time(tmp_path):
    import json
    import time

    (tmp_path / "timing.json").write_text(json.dumps({"data": 100.0}))  # the first layout: seconds per step
    timing = Timing(tmp_path / "timing.json")
    timing.HEARTBEAT = 0.05
    with timing.step("fold-0/seed-0/train"):
        time.sleep(0.3)
        # what a process killed now leaves behind: the step's time up to its last heartbeat
        written = json.loads((tmp_path / "timing.json").read_text())
    ((a, b),) = written["intervals"]["fold-0/seed-0/train"]
    assert 0.1 < b - a <= 0.3 and written["before_intervals"] == {"data": 100.0}
    ((a, b),) = timing.intervals["fold-0/seed-0/train"]
    log = tmp_path / "pauses.txt"
    start = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(int(a) - 10))
    log.write_text(
        f"{start}: restarted after the session ended\n"
        f"paused (SIGSTOP) from {start} for 10 s during the data step\n"  # ends as the step starts
        f"paused (SIGSTOP) from {start} for 1000 s during fold-0/seed-0 train (tests)\n"
    )
    pauses = pauses_of(log)
    assert [q - p for p, q in pauses] == [10.0, 1000.0]
    assert timing.seconds("fold-0/seed-0/train", pauses) == 0.0  # the second pause covers the whole step
    assert abs(timing.seconds("fold-0/seed-0/train", pauses[:1]) - (b - a)) <= 1.0  # whole seconds in the log
    assert timing.hours() == timing.seconds("fold-0/seed-0/train") / 3600  # first-layout totals are apart


@pytest.mark.parametrize("coils", [1, 2])
def test_expected_magnitude_of_the_noise_floor_benchmark_matches_the_simulators_noise(coils):
    """benchmarks/magnitude_bias.py's non-central chi mean against the simulator's own noise,
    from no signal (the pure noise floor) to far above it (its asymptotic branch)."""
    import numpy as np

    from mrharmony.simulate.signal import magnitude_noise

    expected_magnitude = _script("magnitude_bias").expected_magnitude
    nu = np.array([0.0, 0.5, 1.0, 2.0, 5.0, 27.0, 29.0, 60.0])
    rng = np.random.default_rng(0)
    drawn = np.array([magnitude_noise(rng, np.full(200_000, v), 2.0, coils).mean() for v in 2.0 * nu])
    np.testing.assert_allclose(expected_magnitude(2.0 * nu, 2.0, coils), drawn, rtol=0, atol=0.02)
    assert expected_magnitude(np.array([0.0]), 1.0, 1)[0] == pytest.approx(np.sqrt(np.pi / 2))  # Rayleigh mean


def test_demo_budget_benchmark_needs_a_finished_demo(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "demo_budget.py"), str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (
        f"demo_budget.py: error: {tmp_path / 'demo'} has no run diqt-prisma_st; "
        f"run 'mrharmony demo {tmp_path / 'demo'}' first."
    )
    assert not (tmp_path / "demo").exists()


def test_msp_tuned_try_needs_a_scored_fold_of_the_benchmark(tmp_path):
    bench = tmp_path / "bench"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "msp_tuned.py"), str(bench), "--fold", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2 and r.stdout == ""
    ev = bench / "fold-1" / "seed-0" / "evaluation" / "evaluation.json"
    assert r.stderr.strip() == (
        f"msp_tuned.py: error: {ev} does not exist; run benchmarks/dmri.py for that fold and seed first."
    )
    assert not bench.exists()


def test_msp_tuned_try_judges_msp_against_its_better_rival_per_subject():
    claims = _script("msp_tuned").claims
    values = {
        "prisma_st": {
            "msp_tuned": {"sh_noiseless": {"a": 0.9, "b": 0.6}},
            "diqt_tuned_sh": {"sh_noiseless": {"a": 1.0, "b": 1.0}},  # mean 1.0: the better rival
            "diqt_tuned_sh_continued": {"sh_noiseless": {"a": 0.5, "b": 2.0}},  # better on "a", mean 1.25
            "msp": {"sh_noiseless": {"a": 2.0, "b": 2.0}},  # its rivals not scored: no claim
        }
    }
    (c,) = claims(values)
    assert (c["target"], c["row"], c["rival"]) == ("prisma_st", "msp_tuned", "diqt_tuned_sh")
    assert c["ratio_per_subject"] == pytest.approx({"a": 0.9, "b": 0.6}) and c["ratio_mean"] == pytest.approx(0.75)


def test_structural_benchmarks_score_extra_subjects_that_repeat_the_training_data(tmp_path):
    from types import SimpleNamespace

    from mrharmony.bench.structural import evaluation_data
    from mrharmony.data.structural import load_structural
    from mrharmony.simulate.structural import simulate_structural

    ds = load_structural(simulate_structural(tmp_path / "data", preset="tiny", seed=0, quiet=True))
    model = SimpleNamespace(split={"test": ["sub-04"], "validation": ["sub-02"], "train": ["sub-01", "sub-03"]})
    assert evaluation_data(tmp_path, "tiny", 0, ds, model, 0) == (ds, None)
    more, split = evaluation_data(tmp_path, "tiny", 0, ds, model, 2)
    assert more.subjects == ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05", "sub-06"]
    assert split == {"test": ["sub-04", "sub-05", "sub-06"], "validation": ["sub-02"]}
    # data made otherwise are refused
    with pytest.raises(SystemExit, match="does not repeat the training data's subjects"):
        evaluation_data(
            tmp_path,
            "tiny",
            1,
            load_structural(simulate_structural(tmp_path / "other", preset="tiny", seed=1, quiet=True)),
            model,
            2,
        )


def test_goal_ratios_of_the_dmri_summary_are_per_subject_ratios_of_the_chosen_rows():
    def goal_ratios(values, targets):
        return summary.goal_ratios(values, targets, CLAIMS)

    subjects = ["s1", "s2", "s3"]

    def row(*values):
        return dict(zip(subjects, values))

    values = {
        "prisma_st": {
            "diqt_tuned": {
                "fa_noiseless": row(0.02, 0.03, 0.04),
                "fa_scan": row(0.03, 0.03, 0.03),
                "sh_noiseless": row(0.5, 0.5, 0.5),
            },
            "diqt": {
                "fa_noiseless": row(0.05, 0.05, 0.05),
                "fa_scan": row(0.05, 0.05, 0.05),
                "sh_noiseless": row(0.4, 0.4, 0.4),
            },
            "diqt_widened": {"fa_noiseless": {"s1": 0.001}},  # the lowest, but scored on one subject only
            "msp": {
                "fa_noiseless": row(0.06, 0.06, 0.06),
                "fa_scan": row(0.06, 0.06, 0.06),
                "sh_noiseless": row(0.3, 0.36, 0.3),
            },
            "diqt_continued": {"sh_noiseless": row(0.45, 0.45, 0.45)},
            "rish": {"fa_noiseless": row(0.04, 0.06, 0.08), "fa_scan": row(0.04, 0.04, 0.04)},
            "combat": {"fa_noiseless": row(0.07, 0.07, 0.07)},
            "rescan": {"fa_noiseless": row(0.01, 0.01, 0.01), "fa_scan": row(0.02, 0.02, 0.04)},
        }
    }
    goals = goal_ratios(values, ["prisma_st"])["prisma_st"]
    g = goals["learned_vs_statistical"]["fa_noiseless"]
    assert (g["a"], g["b"], g["n_subjects"]) == ("diqt_tuned", "rish", 3)  # widened left out; floors never chosen
    assert g["mean"] == pytest.approx(0.5)  # 0.02/0.04, 0.03/0.06, 0.04/0.08
    r = goals["learned_vs_rescan"]["fa_scan"]
    assert (r["a"], r["b"]) == ("diqt_tuned", "rescan") and r["mean"] == pytest.approx((1.5 + 1.5 + 0.75) / 3)
    m = goals["msp_vs_rivals"]["sh_noiseless"]
    assert (m["a"], m["b"]) == ("msp", "diqt") and m["mean"] == pytest.approx((0.75 + 0.9 + 0.75) / 3)
    assert m["ci95"][0] <= m["mean"] <= m["ci95"][1]
    # judged against the goals: 0.5 <= 0.7 (met); 1.25 > 1.0 (not met)
    assert (g["goal"], g["met"], r["goal"], r["met"]) == (0.7, True, 1.0, False)
    # MSP at 0.4, 0.4 and 1.2 of its rival: 0.67 on average, its interval reaching above 1
    values["prisma_st"]["msp"]["sh_noiseless"] = row(0.16, 0.16, 0.48)
    m = goal_ratios(values, ["prisma_st"])["prisma_st"]["msp_vs_rivals"]["sh_noiseless"]
    assert m["mean"] == pytest.approx(2 / 3) and m["ci95"][1] >= 1.0
    assert (m["goal"], m["met"]) == (0.8, False)
    values["prisma_st"]["msp"]["sh_noiseless"] = row(0.24, 0.28, 0.24)  # 0.6, 0.7, 0.6: met
    assert goal_ratios(values, ["prisma_st"])["prisma_st"]["msp_vs_rivals"]["sh_noiseless"]["met"] is True


@pytest.mark.parametrize("script", ["dmri.py", "dmri_multishell.py"])
def test_dmri_benchmark_summarizes_only_what_is_scored(tmp_path, script):
    out = tmp_path / "bench"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            "--budget",
            "smoke",
            "--out",
            str(out),
            "--summarize-only",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (
        r.returncode == 2
        and r.stderr.strip() == f"{script}: error: {out} has no fold scored yet; nothing to summarize."
    )
    assert not out.exists()


def test_dmri_summary_judges_the_cohort_goal_and_the_training_time_and_names_the_rows_compared(tmp_path):
    headline = summary.headline
    ratio = {"mean": 0.95, "ci95": [0.7, 1.2]}
    goals = {
        "prisma_st": {
            "learned_vs_statistical": {"fa_noiseless": {"a": "diqt_tuned"}, "md_noiseless": {"a": "shresnet"}}
        },
        "connectom_sa": {"learned_vs_statistical": {"fa_noiseless": {"a": "diqt"}}},
    }
    cohort = {
        "prisma_st": {
            "diqt_tuned": {"fa_effect_ratio": ratio, "md_effect_ratio": {"mean": 0.6, "ci95": [0.2, 1]}},
            "shresnet": {"md_effect_ratio": {"mean": 1.12, "ci95": [0.8, 1.5]}},
        }
    }
    summary.cohort_goals(goals, cohort, CLAIMS)
    fa, md = (goals["prisma_st"]["cohort_effect"][k] for k in ("fa_effect_ratio", "md_effect_ratio"))
    # each measure judged with the learned row chosen on it: diqt_tuned's FA effect, shresnet's MD effect
    assert (fa["a"], fa["mean"], fa["goal"], fa["met"]) == ("diqt_tuned", 0.95, [0.9, 1.1], True)
    assert (md["a"], md["mean"], md["met"]) == ("shresnet", 1.12, False)
    assert "cohort_effect" not in goals["connectom_sa"]  # no cohort scored for that target

    subjects = ["s1", "s2"]
    values = {
        "prisma_st": {
            "diqt": {"fa_noiseless": dict(zip(subjects, (0.03, 0.05)))},
            "diqt_widened": {"fa_noiseless": {"s1": 0.001}},
            "rish": {"fa_noiseless": dict(zip(subjects, (0.05, 0.05)))},
            "none": {"fa_noiseless": dict(zip(subjects, (0.04, 0.05)))},
            "rescan": {"fa_noiseless": dict(zip(subjects, (0.01, 0.01)))},
        }
    }
    assert headline(values, ["prisma_st"]) == {
        "prisma_st": {"fa_noiseless": {"best_statistical": "none", "best_learned": "diqt"}}
    }

    timing = Timing(tmp_path / "timing.json")
    timing.before = {"fold-0/seed-0/train": 100.0}  # timed before intervals were recorded: left out
    timing.intervals = {
        "fold-0/seed-0/train": [[0.0, 10.0]],
        "fold-1/seed-0/train": [[0.0, 3000.0], [5000.0, 6000.0]],
        "fold-2/seed-0/train": [[0.0, 3500.0]],
    }
    tm = summary.fold_training_minutes(timing, [(1000.0, 1600.0)], [(0, 0), (1, 0), (2, 0)], CLAIMS)
    assert tm["per_fold"] == {"fold-1": pytest.approx(3400 / 60), "fold-2": pytest.approx(2900 / 60)}
    assert tm["goal"] == 60.0 and tm["met"] is True and tm["not_timed"] == ["fold-0"]
    tm = summary.fold_training_minutes(timing, [], [(1, 0)], CLAIMS)
    assert tm["per_fold"] == {"fold-1": pytest.approx(4000 / 60)} and tm["met"] is False


def test_a_benchmark_run_is_trained_once_resumed_from_its_checkpoint_and_its_config_kept(tmp_path, monkeypatch):
    import yaml

    import mrharmony.dmri.training as training

    calls = []

    def fake_train(config, out, *, resume, quiet):
        calls.append((config, resume))
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / "last.pt").write_text("")
        return out

    monkeypatch.setattr(training, "train", fake_train)
    cfg = {"preset": "test", "data": {"dataset": "../data"}, "model": {"method": "diqt"}, "training": {"seed": 0}}
    out = train_dmri_run(tmp_path, "diqt-a", cfg, tag="fold-0/seed-0")
    assert out == tmp_path / "runs" / "diqt-a"
    assert calls == [(tmp_path / "configs" / "diqt-a.yaml", False)]
    assert yaml.safe_load((tmp_path / "configs" / "diqt-a.yaml").read_text()) == cfg
    # interrupted (a checkpoint, no model): resumed from it, its config as it was written
    (tmp_path / "configs" / "diqt-a.yaml").write_text("kept: true\n")
    train_dmri_run(tmp_path, "diqt-a", {**cfg, "label": "other"})
    assert calls[-1] == (None, True) and (tmp_path / "configs" / "diqt-a.yaml").read_text() == "kept: true\n"
    # finished (a network's model.pt or a statistical method's harmonizer.json): not trained again
    (out / "model.pt").write_text("")
    (tmp_path / "runs" / "rish").mkdir()
    (tmp_path / "runs" / "rish" / "harmonizer.json").write_text("{}")
    assert train_dmri_run(tmp_path, "diqt-a", cfg) == out
    assert train_dmri_run(tmp_path, "rish", cfg) == tmp_path / "runs" / "rish" and len(calls) == 2


def test_msps_rival_is_its_chosen_first_stage_trained_on_whichever_network_that_was(tmp_path):
    import json

    def write(fold, rows):
        ev = tmp_path / f"fold-{fold}" / "seed-0" / "evaluation"
        ev.mkdir(parents=True)
        (ev / "evaluation.json").write_text(
            json.dumps(
                {
                    "volume_errors": [
                        {"method": m, "target": t, "subject": s, "sh_rel_noiseless": v} for m, t, s, v in rows
                    ]
                }
            )
        )

    # prisma_st: MSP chose DIQT on fold 0 and CNN-RISH on fold 1; connectom_st: DIQT on both
    write(0, [("diqt_continued", "prisma_st", "s1", 0.1), ("diqt_continued", "connectom_st", "s1", 0.3)])
    write(1, [("cnn_rish_continued", "prisma_st", "s2", 0.2), ("diqt_continued", "connectom_st", "s2", 0.4)])
    per_subject, _, _ = summary.gather(tmp_path, [(0, 0), (1, 0)], CLAIMS)
    assert per_subject[(summary.CONTINUED, "prisma_st", "s1")]["sh_noiseless"] == [0.1]
    assert per_subject[(summary.CONTINUED, "prisma_st", "s2")]["sh_noiseless"] == [0.2]
    assert not any(k[0] == summary.CONTINUED and k[1] == "connectom_st" for k in per_subject)  # one network: one name
    assert summary.continued_rival({"diqt_continued": {}, summary.CONTINUED: {}, "msp": {}}) == summary.CONTINUED
    assert summary.continued_rival({"diqt_continued": {}, "msp": {}}) == "diqt_continued"
    assert summary.continued_rival({"msp": {}}) is None


def test_the_dmri_summary_tests_only_its_claims_and_shows_no_interval_for_two_subjects():
    rng = np.random.default_rng(0)
    subjects = [f"s{i}" for i in range(10)]

    def row(scale):
        return {
            "sh_noiseless": dict(zip(subjects, scale * (1 + 0.1 * rng.random(10)))),
            "fa_noiseless": dict(zip(subjects, scale * (1 + 0.1 * rng.random(10)))),
            "fa_scan": dict(zip(subjects, scale * (1 + 0.1 * rng.random(10)))),
        }

    values = {
        "prisma_st": {
            "msp": row(1.0),
            "msp_stage1": row(1.1),
            "diqt_continued": row(1.05),
            "diqt": row(1.2),
            "cnn_rish": row(1.3),
            "diqt_tuned": row(0.5),
            "rish": row(2.0),
            "none": row(3.0),
            "rescan": row(0.4),
            "oracle": row(0.0),
        }
    }
    tests = summary.subject_tests(values, ["prisma_st"])
    assert [(x["metric"], x["a"], x["b"]) for x in tests] == [
        ("sh_noiseless", "msp", "diqt_continued"),
        ("sh_noiseless", "msp", "msp_stage1"),
        ("sh_noiseless", "msp", "diqt"),
        ("fa_noiseless", "diqt_tuned", "rish"),
        ("fa_scan", "diqt_tuned", "rescan"),
    ]
    assert all(x["n"] == 10 for x in tests)
    made = {
        "budget": "cpu",
        "command": "c",
        "machine": {"node": "n", "cpus": 2},
        "wall_hours": 1.0,
        "seeds": [0],
        "subjects": subjects,
        "folds": 5,
        "cohort": {},
        "tests": [],
        "goals": {},
        "targets": {
            "prisma_st": {
                "diqt_widened": {"fa_scan": {"mean": 0.5, "ci95": [0.4, 0.6], "n_subjects": 2, "seed_sd": 0.01}},
                "diqt": {"fa_scan": {"mean": 0.3, "ci95": [0.2, 0.4], "n_subjects": 10}},
            }
        },
    }
    text = summary.markdown(made)
    assert "| diqt_widened | 2 |" in text and "0.5 (n=2)" in text and "[0.4, 0.6]" not in text
    assert "| diqt | 10 |" in text and "0.3 [0.2, 0.4]" in text
    assert "## Spread over seeds" in text and "| prisma_st | diqt_widened |" in text


def test_dmri_benchmark_record_brings_finished_folds_to_a_machine_that_lost_its_output(tmp_path):
    import json

    root, record = tmp_path / "out", tmp_path / "record"
    work = root / "fold-0" / "seed-0"
    (work / "evaluation").mkdir(parents=True)
    (work / "runs" / "diqt-prisma_st").mkdir(parents=True)  # models: not recorded
    (work / "evaluation" / "evaluation.json").write_text(json.dumps({"volume_errors": []}))
    mark_done(work / "evaluation" / "evaluation.json", ["diqt-prisma_st"])
    (work / "evaluation" / "fold.md").write_text("a table\n")  # the fold's own tables: not recorded
    (root / "timing.json").write_text(json.dumps({"intervals": {"data": [[0, 1]]}}))
    save_record(record, root, work, RECORDED)
    kept = sorted(str(p.relative_to(record)) for p in record.rglob("*") if p.is_file())
    assert kept == [
        "fold-0/seed-0/evaluation/evaluation.json",
        "fold-0/seed-0/evaluation/evaluation.json.runs",
        "timing.json",
    ]
    # a fold and seed with its runs here is not "recorded only": its steps are checked as before
    assert not recorded_only(work, [summary.EVALUATED])

    fresh = tmp_path / "fresh"
    (record / "notes.txt").write_text("a log kept beside the record\n")
    assert restore_record(record, fresh, RECORDED, summary.EVALUATED) == ["fold-0/seed-0"]
    assert not (fresh / "notes.txt").exists()
    assert json.loads((fresh / "timing.json").read_text()) == {"intervals": {"data": [[0, 1]]}}
    restored = fresh / "fold-0" / "seed-0"
    assert recorded_only(restored, [summary.EVALUATED])
    assert not recorded_only(restored, [summary.EVALUATED, summary.COHORT_SCORED])  # its cohort score is missing
    assert Plan(1, [0], None).scored(fresh, summary.EVALUATED) == [(0, 0)]
    # what the fresh machine has already is not overwritten
    (fresh / "timing.json").write_text("{}")
    assert (
        restore_record(record, fresh, RECORDED, summary.EVALUATED) == [] and (fresh / "timing.json").read_text() == "{}"
    )


def test_dmri_benchmark_runs_the_first_seed_of_every_fold_before_the_further_seeds():
    assert Plan(3, [0, 1, 2], 1).run_order() == [(0, 0), (1, 0), (2, 0), (0, 1), (0, 2)]
    plan = Plan(2, [0, 1, 2], None)
    assert sorted(plan.run_order()) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert plan.run_order()[:2] == [(0, 0), (1, 0)]


def test_dmri_benchmark_whose_folds_are_all_recorded_simulates_nothing_and_summarizes(tmp_path):
    import json

    record, out = tmp_path / "record", tmp_path / "out"
    plan = Plan(3, [0, 1], 2)  # the smoke budget's
    subjects = ["sub-01", "sub-02", "sub-03"]  # the tiny preset's, as simulate names them
    for f, held_out in enumerate(folds_of(subjects, 3)):
        for s in plan.seeds_of(f):
            work = record / f"fold-{f}" / f"seed-{s}"
            (work / "evaluation").mkdir(parents=True)
            rows = [
                {"method": m, "target": "prisma_st", "subject": x, "fa_mae": v + 0.01 * s, "md_mae": v * 1e-4}
                for x in held_out
                for m, v in (("none", 0.05), ("rish", 0.04), ("diqt", 0.03), ("rescan", 0.03))
            ]
            (work / "evaluation" / "evaluation.json").write_text(json.dumps({"volume_errors": rows}))
            mark_done(work / "evaluation" / "evaluation.json", ["diqt-prisma_st"])
            (work / "cohort.json").write_text(json.dumps({"fold": f, "seed": s, "rows": []}))  # every fold's
            mark_done(work / "cohort.json", ["diqt-prisma_st"])
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "dmri.py"),
            "--budget",
            "smoke",
            "--out",
            str(out),
            "--record",
            str(record),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert not (out / "data").exists() and not (out / "cohort").exists()
    written = json.loads((out / "summary.json").read_text())
    assert written["subjects"] == subjects
    fa = written["targets"]["prisma_st"]["diqt"]["fa_scan"]
    # a subject's value is its mean over seeds: 0.035 on the two folds trained with seeds 0 and 1, 0.03 on the third
    assert fa["n_subjects"] == 3 and abs(fa["mean"] - (2 * 0.035 + 0.03) / 3) < 1e-12
    assert not (record / "timing.json").exists()  # no step ran, none was timed


def test_the_declared_goals_judge_the_primary_rows_with_folds_as_the_unit():
    """The goals of the dMRI summary: one entry per target, goal, metric and unit, on the rows
    declared before the run; the fold unit averages each fold's subject ratios and takes a t-interval
    over the folds; the cohort's effect_kept is each fold's ratio of raw differences."""
    from scipy.stats import t as student

    folds = [["s1", "s2"], ["s3", "s4"], ["s5", "s6"]]
    subjects = [s for f in folds for s in f]

    def row(*values):
        return dict(zip(subjects, values))

    learned, practice = CLAIMS.primary["learned"], CLAIMS.primary["practice"]
    values = {
        "prisma_st": {
            learned: {"fa_noiseless": row(1, 1, 2, 2, 3, 3), "fa_scan": row(1, 1, 1, 1, 1, 1)},
            practice: {"fa_noiseless": row(2, 2, 4, 4, 6, 6)},  # ratio 0.5 on every subject
            "rescan": {"fa_scan": row(2, 1, 1, 1, 1, 1)},  # fold means 0.75, 1, 1
            "msp": {"sh_noiseless": row(9, 9, 9, 9, 9, 9)},
            "diqt_continued": {"sh_noiseless": row(10, 10, 10, 10, 10, 10)},
            "diqt": {"fa_noiseless": row(0.1, 0.1, 0.1, 0.1, 0.1, 0.1)},  # the best of, but not declared: no goal
        }
    }
    goals = summary.declared_goals(values, ["prisma_st"], folds, [], {}, CLAIMS)
    keys = {"target", "name", "a", "b", "metric", "mean", "ci95", "unit", "n", "goal", "met"}
    assert all(set(g) == keys for g in goals)
    by = {(g["name"], g["metric"], g["unit"]): g for g in goals}
    g = by[("primary_vs_practice", "fa_truth", "fold")]
    assert (g["a"], g["b"], g["n"], g["mean"], g["met"]) == (learned, practice, 3, 0.5, True)
    assert g["ci95"] == [0.5, 0.5]
    r = by[("primary_vs_rescan", "fa_scan", "fold")]
    m = (0.75 + 1 + 1) / 3
    half = student.ppf(0.975, 2) * np.std([0.75, 1, 1], ddof=1) / np.sqrt(3)
    assert r["mean"] == pytest.approx(m) and r["ci95"] == pytest.approx([m - half, m + half])
    assert r["met"] is True and by[("primary_vs_rescan", "fa_scan", "subject")]["n"] == 6
    msp = by[("msp_vs_rival", "sh_truth", "fold")]
    assert (msp["a"], msp["b"], msp["mean"], msp["goal"], msp["met"]) == ("msp", "diqt_continued", 0.9, 0.8, False)
    assert not any(g["a"] == "diqt" for g in goals)
    # the cohort: patients minus controls, through every fold's harmonizers
    rows = []
    for f in range(3):
        for i, group in enumerate(["control", "patient"] * 2):
            fa_t = 0.5 - 0.05 * (group == "patient") + 0.01 * i
            md_t = 7e-4 * (1 + 0.1 * (group == "patient")) + 1e-6 * i
            kept = 1.0 if f < 2 else 0.5  # the third fold's model keeps half of each difference
            base_fa, base_md = 0.5 + 0.01 * i, 7e-4 + 1e-6 * i
            rows.append(
                {
                    "method": learned,
                    "model": 0,
                    "subject": f"c{i}",
                    "group": group,
                    "target": "prisma_st",
                    "fold": f,
                    "fa": base_fa + kept * (fa_t - base_fa),
                    "md": base_md + kept * (md_t - base_md),
                    "fa_target": fa_t,
                    "md_target": md_t,
                    "fa_wm": base_fa + kept * (fa_t - base_fa),
                    "md_wm": base_md + kept * (md_t - base_md),
                    "fa_wm_target": fa_t,
                    "md_wm_target": md_t,
                }
            )
    from mrharmony.dmri.cohort import group_summary

    goals = summary.declared_goals(values, ["prisma_st"], folds, rows, group_summary(rows), CLAIMS)
    kept = {(g["metric"], g["unit"]): g for g in goals if g["name"] == "effect_kept" and g["a"] == learned}
    fold = kept[("global_md", "fold")]
    # the third fold: half the patients' 7e-5 rise, with the subjects' own 1e-6 steps whole (3.6 / 7.1)
    assert fold["n"] == 3 and fold["mean"] == pytest.approx((1 + 1 + 3.6 / 7.1) / 3) and fold["goal"] == [0.9, 1.1]
    assert fold["met"] is False and kept[("regional_fa", "subject")]["n"] == 4


def test_the_primary_learned_row_is_the_candidate_of_lower_validation_loss(tmp_path):
    """Per fold and target the declared candidate recipes compete on their validation loss (a
    validation subject's, written by training), never on test data; the choice is recorded and
    names the chosen candidate's rows as the primary learned row."""
    import json

    import torch

    losses = {
        ("diqt_residual", "prisma_st"): 0.5,
        ("diqt_tuned_residual", "prisma_st"): 0.4,
        ("diqt_residual", "connectom_sa"): 0.7,
        ("diqt_tuned_residual", "connectom_sa"): 0.9,
    }
    for (label, t), v in losses.items():
        (tmp_path / "runs" / f"{label}-{t}").mkdir(parents=True)
        torch.save(
            {"format_version": 1, "meta": {"best_validation_loss": {t: v}}},
            tmp_path / "runs" / f"{label}-{t}" / "model.pt",
        )
    chosen = primary_choice(tmp_path, CLAIMS.candidates)
    assert chosen == {"prisma_st": "diqt_tuned_residual", "connectom_sa": "diqt_residual"}
    assert json.loads((tmp_path / "primary.json").read_text())["chosen"] == chosen

    class H:
        targets = ["connectom_sa"]

    assert primary_name("diqt_residual", H, chosen, CLAIMS) == CLAIMS.primary["learned"]
    assert primary_name("diqt_tuned_residual", H, chosen, CLAIMS) == "diqt_tuned_residual"
    assert primary_name("rish", H, chosen, CLAIMS) == "rish"
