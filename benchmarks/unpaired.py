"""The unpaired dMRI benchmark: harmonizing a study's sites without traveling heads, to seen and
unseen scanners, with site confounded with diagnosis and age.

A simulated multi-site study (``mrharmony simulate --kind study``): each site its own people
(controls and patients, with ages and sexes) on its own platform drawn from the packaged
distribution; one site scans more patients than the others and one scans older people. The
learned method, ``stylecode``, trains on the seen sites' scans only (no traveling heads); the
unseen sites are new scanners it meets at apply time through one (or five) of their scans. Every
person of the other sites is harmonized to each target site and scored against their noiseless
render on the target's platform (:mod:`mrharmony.bench.unpaired`).

The rows, declared here before any run (:data:`ROWS`; the summary records the commit):

* ``none``: the person's own scan, its signal written on the target's gradient table;
* ``rish_template``: linear RISH learned from the controls of the person's site and the target
  site (the study's practice, through their SyN template at the cpu budget);
* ``combat_covariates``: ComBat on FA and MD with age, sex and diagnosis as covariates, fitted on
  everyone of the two sites (in the ``combat`` extra's environment; absent elsewhere);
* ``combat_location``: the same ComBat with its location adjustment alone (``scale: false``), which
  keeps each person's difference from their site's mean as it is;
* ``stylecode_1`` and ``stylecode_5``: stylecode given 1 and 5 scans of controls of the target site;
* ``rescan``: the floor, the person scanned on the target's platform itself.

and the upper bound ``msp``: MSP trained on simulated traveling heads (other people, scanned on every
seen site's platform) from the platform of one seen site (``msp_source``) to the other seen sites,
applied to the people of that site.

Usage:
    python benchmarks/unpaired.py --budget {smoke,cpu} --out DIR [--record FOLDER] [--quiet]
    (run with .venv-combat/bin/python for the ComBat row)

Resumable: scores and models are kept under DIR and reused. Writes DIR/summary.json and
DIR/summary.md (and copies them as FOLDER/unpaired-<budget>.json / .md with --record).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import numpy as np

from mrharmony.bench.dmri import train_dmri_run
from mrharmony.bench.summary import command, dump_json, machine
from mrharmony.bench.unpaired import (
    Scorer,
    cached,
    code_separation,
    dti_on,
    environment_has_combat,
    fit_scan,
    harmonized_maps,
    person_scan,
    pooled_effects,
    scan_features,
)
from mrharmony.stats import mean_ci, t_interval

#: the rows, declared before any run: name -> what it is
ROWS = {
    "none": "no harmonization",
    "rish_template": "linear RISH from the controls of both sites (template)",
    "combat_covariates": "ComBat on FA/MD with age, sex and diagnosis, fitted on both sites",
    "combat_location": "the same ComBat, its location adjustment alone (scale: false)",
    "stylecode_1": "stylecode given 1 scan of the target site",
    "stylecode_5": "stylecode given 5 scans of the target site",
    "rescan": "floor: the person scanned on the target's platform",
    "msp": "upper bound: MSP trained on traveling heads (people of msp_source, seen targets)",
}
#: the declared goals: (name, which targets, row a, row b or None, metric, window (lo, hi))
GOALS = (
    ("oneshot_vs_rish_template", "unseen", "stylecode_1", "rish_template", "fa_truth", (None, 1.0)),
    ("oneshot_vs_rish_template", "unseen", "stylecode_1", "rish_template", "md_truth", (None, 1.0)),
    ("effect_confounded", "unseen", "stylecode_1", None, "regional_fa", (0.9, 1.1)),
    ("effect_confounded", "unseen", "stylecode_1", None, "global_md", (0.9, 1.1)),
    ("effect_confounded", "unseen", "stylecode_1", None, "age_md", (0.9, 1.1)),
    ("effect_confounded", "unseen", "combat_covariates", None, "regional_fa", (0.9, 1.1)),
    ("effect_confounded", "unseen", "combat_covariates", None, "global_md", (0.9, 1.1)),
    ("effect_confounded", "unseen", "combat_covariates", None, "age_md", (0.9, 1.1)),
    ("oneshot_vs_msp", "seen", "stylecode_1", "msp", "fa_truth", (None, 1.2)),
)
UNITS = {"fa_truth": "ratio of mean FA errors", "md_truth": "ratio of mean MD errors"}
#: per budget: the study (preset, seed, design), the seen and unseen sites, the target sites, RISH's
#: controls and registration, ComBat's age term, stylecode's settings and seeds
SETTINGS = {
    "smoke": {
        "preset": "tiny",
        "seed": 5,
        "design": {
            "sites": 4,
            "controls_per_site": 4,
            "patients_per_site": 2,
            "age_range": [30, 70],
            "patients": {"site-02": 0.5},
            "ages": {"site-02": [55, 80]},
        },
        "seen": ["site-01", "site-02", "site-03"],
        "unseen": ["site-04"],
        "targets": ["site-01", "site-04"],
        "msp_source": "site-03",  # MSP's input platform (a 2.4 mm site: the targets' voxels divide it)
        "traveling_heads": 4,
        "msp_training": {"preset": "test"},
        "controls": 3,
        "registration": "none",  # the tiny block lies in one MNI box: too small to register
        "age_term": "linear",
        "shots": {"stylecode_1": 1, "stylecode_5": 2},
        "seeds": [0],
        "stylecode": {
            "model": {"width": 8, "code_dim": 4, "blocks": 1, "patch": 8, "style_patch": 10},
            "training": {"encoder_epochs": 2, "generator_epochs": 2, "steps_per_epoch": 5, "batch_size": 2},
        },
    },
    "cpu": {
        "preset": "demo",
        "seed": 5,
        "design": {
            "sites": 6,
            "controls_per_site": 16,
            "patients_per_site": 8,
            "age_range": [20, 80],
            "patients": {"site-02": 0.7},
            "ages": {"site-03": [60, 85]},
        },
        "seen": ["site-01", "site-02", "site-03", "site-04"],
        "unseen": ["site-05", "site-06"],
        "targets": ["site-01", "site-05", "site-06"],
        "msp_source": "site-04",
        "traveling_heads": 10,
        "msp_training": {"preset": "demo"},
        "controls": 16,  # of each site, or all its controls where it has fewer (site-02)
        "registration": "syn",
        "age_term": "spline",
        "shots": {"stylecode_1": 1, "stylecode_5": 5},
        "seeds": [0, 1],  # two training runs of stylecode: an interval over runs beside the one over people
        "stylecode": {"model": {}, "training": {}},
    },
}
SCRIPT = "benchmarks/unpaired.py"


def log(args, text: str) -> None:
    if not args.quiet:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def make_study(out: Path, b: dict, args) -> Path:
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.simulate.study import StudyDesign, simulate_study

    root = out / "study"
    if not (root / "participants.tsv").is_file():
        log(args, "simulating the study")
        simulate_study(
            root, preset=b["preset"], seed=b["seed"], design=StudyDesign(**b["design"]), quiet=args.quiet, force=True
        )
    prepare(root, quiet=True)
    return root


def train_stylecode(out: Path, study: Path, b: dict, seed: int, args) -> Path:
    """stylecode trained on the seen sites (resumed where a run stopped)."""
    cfg = {
        "data": {"study": str(study), "sites": b["seen"]},
        "model": {"method": "stylecode", **b["stylecode"]["model"]},
        "training": {**b["stylecode"]["training"], "seed": seed, "device": "cpu"},
    }
    return train_dmri_run(out, f"stylecode-seed{seed}", cfg, tag="stylecode", quiet=args.quiet)


def traveling_heads(out: Path, study_root: Path, b: dict, args) -> Path:
    """Traveling heads of the seen sites' platforms (their parameters as the study drew them; other
    people than the study's), ``msp_source`` the input platform; prepared."""
    import yaml

    from mrharmony.config import load_yaml_model, read_yaml
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.simulate import simulate
    from mrharmony.simulate.study import PlatformDistribution, default_distribution_path

    root = out / "traveling-heads"
    if not (root / "dataset.yaml").is_file():
        sim = read_yaml(study_root / "simulation.yaml")
        dist = load_yaml_model(PlatformDistribution, default_distribution_path())
        plats = [
            {
                **{k: v for k, v in p.items() if k != "snr"},
                "role": "input" if p["name"] == b["msp_source"] else "target",
            }
            for p in sim["platforms"]
            if p["name"] in b["seen"]
        ]
        file = out / "runs" / "traveling-heads-platforms.yaml"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(
            yaml.safe_dump({"snr_reference": dist.snr_reference.model_dump(mode="json"), "platforms": plats})
        )
        log(args, f"simulating {b['traveling_heads']} traveling heads on the seen sites' platforms")
        simulate(
            root,
            preset=b["preset"],
            seed=b["seed"] + 1,
            platforms_file=file,
            n_subjects=b["traveling_heads"],
            force=True,
            quiet=True,
        )
    prepare(root, quiet=True)
    return root


def train_msp(out: Path, heads: Path, b: dict) -> Path:
    """MSP from ``msp_source`` to the other seen sites, trained on every traveling head."""
    cfg = {
        "preset": b["msp_training"]["preset"],
        "data": {"dataset": str(heads), "targets": [s for s in b["seen"] if s != b["msp_source"]]},
        "model": {"method": "msp"},
        "training": {"seed": 0, "device": "cpu"},
    }
    return train_dmri_run(out, "msp", cfg, tag=f"MSP from {b['msp_source']} on the traveling heads")


def fit_pair(out: Path, study, method: str, source: str, target: str, b: dict) -> Path:
    controls = min(b["controls"], *(sum(p.group == "control" for p in study.at(s)) for s in (source, target)))
    data = {"study": str(study.root), "source": source, "target": target, "controls": controls}
    if method == "rish":
        model = {"method": "rish", "registration": b["registration"]}
    else:
        data["people"] = "everyone"
        model = {
            "method": "combat",
            "registration": b["registration"],
            "covariates": ["age", "sex", "group"],
            "age_term": b["age_term"],
            "scale": method != "combat_location",
        }
    return train_dmri_run(out, f"{method}-{source}-to-{target}", {"data": data, "model": model}, tag="fit")


def score_target(out: Path, study_root: Path, target: str, b: dict, models: dict, args) -> dict:
    """Every row's scores of every person of the other sites harmonized to ``target``, and the
    target site's own people as they are (for the pooled analyses)."""
    from mrharmony.data.study import load_study
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.dmri.stylecode import StyleCodeHarmonizer

    study = load_study(study_root)
    sh = json_sidecar(study_root, study.at(target)[0].subject, target)["sh"]
    scorer = Scorer(study_root, out / "cache", sh)
    first = person_scan(study, study.at(target)[0].subject)
    gradients = (first[1], first[2])
    controls = [p.subject for p in study.at(target) if p.group == "control"]
    short = [row for row, k in b["shots"].items() if k > len(controls)]
    if short:
        raise SystemExit(f"{target} has {len(controls)} controls, fewer than the scans row {short[0]} is given")
    harmonizers: dict = {}
    for row, k in b["shots"].items():
        for seed, run in models["stylecode"].items():
            h = StyleCodeHarmonizer.load(run)
            feats = [scan_features(person_scan(study, s), h.reference["sh"]) for s in controls[:k]]
            harmonizers[f"{row}-seed{seed}"] = h.with_target_scans(target, feats, gradients)
    scores: dict = {}
    msp = load_harmonizer(models["msp"]) if models.get("msp") else None
    for site in study.sites:
        if site == target:
            continue
        pair = {
            row: load_harmonizer(models[m][(site, target)])
            for m, row in (("rish", "rish_template"), ("combat", "combat_covariates"), ("combat_location",) * 2)
            if (site, target) in models.get(m, {})
        }
        if msp is not None and site == b["msp_source"] and target in msp.targets:
            pair["msp"] = msp
        for p in study.at(site):
            scores[p.subject] = score_person(out, scorer, study, p, target, gradients, {**pair, **harmonizers})
        log(args, f"{target}: scored the people of {site}")
    own = {}
    for p in study.at(target):
        scan = person_scan(study, p.subject)
        own[p.subject] = {
            "own": cached(
                out / "scores" / target / p.subject / "own.json",
                lambda s=scan, q=p: maps_score(scorer, q, target, s, None, sh),
            ),
            "truth": scorer.truth(p.subject, target)["measures"],
        }
    return {"harmonized": scores, "own": own}


def maps_score(scorer, person, target: str, scan: tuple, gradients, sh) -> dict:
    """The scores of a person's own scan, its signal written on ``gradients`` (None: its own table)."""
    dwi, bvals, bvecs, mask, _ = scan
    fa, md = dti_on(fit_scan(dwi, bvals, bvecs, mask, sh), mask, gradients or (bvals, bvecs), sh)
    return scorer.score(person.subject, target, fa, md, mask, person.site)


def score_person(out: Path, scorer, study, p, target: str, gradients, harmonizers: dict) -> dict:
    """One person's entry: ``none``, ``rescan``, the truth's measures and each harmonizer's scores
    (``<row>-seed<s>`` keys gathered under ``<row>`` by seed)."""
    from mrharmony.simulate.generator import render_scan

    base = out / "scores" / target / p.subject
    sh = scorer.sh
    scan: list = []

    def stored() -> tuple:
        if not scan:
            scan.append(person_scan(study, p.subject))
        return scan[0]

    def rescan() -> dict:
        r = render_scan(study.root, p.subject, target, noise=True, session=2)
        fa, md = dti_on(fit_scan(r.dwi, r.bvals, r.bvecs, r.mask, sh), r.mask, (r.bvals, r.bvecs), sh)
        return scorer.score(p.subject, target, fa, md, r.mask, target)

    def harmonized(h) -> dict:
        cov = {"age": p.age, "sex": p.sex, "group": p.group} if h.covariates else None
        fa, md, mask = harmonized_maps(h, stored(), target, cov)
        return scorer.score(p.subject, target, fa, md, mask, p.site)

    entry: dict = {
        "none": cached(base / "none.json", lambda: maps_score(scorer, p, target, stored(), gradients, sh)),
        "rescan": cached(base / "rescan.json", rescan),
        "truth": scorer.truth(p.subject, target)["measures"],
    }
    for key, h in harmonizers.items():
        row, _, seed = key.partition("-seed")
        value = cached(base / f"{key}.json", lambda h=h: harmonized(h))
        if seed:
            entry.setdefault(row, {})[seed] = value
        else:
            entry[row] = value
    return entry


def json_sidecar(root: Path, subject: str, site: str) -> dict:
    import json

    from mrharmony.dmri.features.prepare import feature_paths

    side = json.loads(feature_paths(root, subject, site)[1].read_text())
    return {"sh": {**side["sh"], "shells": side.get("shells")}}


def row_values(scores: dict, row: str, metric: str) -> np.ndarray:
    """Per person, the row's metric (a stylecode row averaged over its training seeds)."""
    out = []
    for entry in scores.values():
        v = entry.get(row)
        if v is None:
            continue
        if row.startswith("stylecode"):
            out.append(np.mean([s[metric] for s in v.values()]))
        else:
            out.append(v[metric])
    return np.asarray(out, float)


def seed_means(scores: dict, row: str, metric: str) -> list[float]:
    """Per training seed of a stylecode row, the mean of its metric over people."""
    seeds = sorted({seed for e in scores.values() for seed in (e.get(row) or {})})
    return [
        float(np.mean([e[row][seed][metric] for e in scores.values() if seed in (e.get(row) or {})])) for seed in seeds
    ]


def person_measures(scores: dict, row: str) -> dict:
    out = {}
    for subject, entry in scores.items():
        v = entry.get(row)
        if v is None:
            continue
        if row.startswith("stylecode"):
            v = next(iter(v.values()))  # the first seed's (pooled analyses per training run)
        out[subject] = v
    return out


def ratio_ci(a: np.ndarray, b: np.ndarray, *, n_boot: int = 4000, seed: int = 0) -> dict:
    """mean(a) / mean(b) of paired per-person values with a bootstrap interval over people."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(a), (n_boot, len(a)))
    boot = a[i].mean(1) / b[i].mean(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"mean": float(a.mean() / b.mean()), "ci95": [float(lo), float(hi)]}


def summarize(results: dict, b: dict, study_root: Path, args) -> dict:
    from mrharmony.data.study import load_study

    study = load_study(study_root)
    people = {p.subject: p for p in study.participants}
    targets = {}
    for target, res in results.items():
        scores = res["harmonized"]
        rows = {}
        for row in ROWS:
            for metric in ("fa_truth", "md_truth", "fa_bias", "md_bias"):
                v = row_values(scores, row, metric)
                if v.size:
                    rows.setdefault(row, {})[metric] = {**mean_ci(v), "n": int(v.size)}
                    if row.startswith("stylecode"):  # the interval over training runs
                        rows[row][metric]["runs"] = t_interval(seed_means(scores, row, metric))
        pooled_people = [people[s] for s in list(scores) + list(res["own"])]
        own = {s: e["own"] for s, e in res["own"].items()}
        row_measures, truths = {}, {}
        for row in ROWS:
            m = person_measures(scores, row)
            if m:
                row_measures[row] = {**m, **own}
                truths[row] = {s: v["truth"] for s, v in row_measures[row].items()}
        # the truth as a row: its measures on the voxels of no harmonization (the site classifier's
        # reference: with site confounded with age and diagnosis, the people alone tell sites apart)
        row_measures["truth"] = truths["truth"] = truths["none"]
        names = sorted({n for e in truths["none"].values() for n in e["regions"]})
        effects = pooled_effects(pooled_people, row_measures, truths, names)
        targets[target] = {
            "seen": target in b["seen"],
            "rows": rows,
            "effects": effects,
            "n_people": len(scores),
            "n_pooled": len(pooled_people),
        }
    goals = []
    for name, which, a, bb, metric, (lo, hi) in GOALS:
        for target, t in targets.items():
            if (which == "seen") != t["seen"]:
                continue
            entry = {"target": target, "name": name, "a": a, "b": bb, "metric": metric}
            if metric in ("fa_truth", "md_truth"):
                scores = results[target]["harmonized"]
                if bb not in t["rows"] or a not in t["rows"]:
                    goals.append(
                        {
                            **entry,
                            "mean": None,
                            "ci95": None,
                            "unit": UNITS[metric],
                            "n": 0,
                            "goal": f"<= {hi}",
                            "met": None,
                            "note": f"row {bb if bb not in t['rows'] else a} not run",
                        }
                    )
                    continue
                both = [s for s, e in scores.items() if a in e and bb in e]
                va = row_values({s: scores[s] for s in both}, a, metric)
                vb = row_values({s: scores[s] for s in both}, bb, metric)
                r = ratio_ci(va, vb)
                goals.append(
                    {
                        **entry,
                        **r,
                        "unit": UNITS[metric],
                        "n": len(both),
                        "goal": f"<= {hi}",
                        "met": bool(r["mean"] <= hi),
                    }
                )
            else:
                e = t["effects"].get(a, {}).get(metric)
                if e is None:
                    goals.append(
                        {
                            **entry,
                            "mean": None,
                            "ci95": None,
                            "unit": "harmonized effect / truth's",
                            "n": 0,
                            "goal": f"{lo} to {hi}",
                            "met": None,
                            "note": f"row {a} not run",
                        }
                    )
                    continue
                goals.append(
                    {
                        **entry,
                        **e,
                        "unit": "harmonized effect / truth's",
                        "n": t["n_pooled"],
                        "goal": f"{lo} to {hi}",
                        "met": bool(lo <= e["mean"] <= hi),
                    }
                )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    return {
        "benchmark": "unpaired",
        "budget": args.budget,
        "command": command(SCRIPT),
        "commit": commit,
        "machine": machine(),
        "rows": ROWS,
        "settings": b,
        "chance": 1.0 / len(study.sites),
        "targets": targets,
        "goals": goals,
    }


#: people per site whose scanner codes the summary compares (seen and unseen sites)
CODE_PEOPLE = 6


def codes_of_run(out: Path, study, run: Path, seed: int) -> dict:
    """:func:`~mrharmony.bench.unpaired.code_separation` of one stylecode run (cached)."""
    from mrharmony.dmri.stylecode import StyleCodeHarmonizer

    return cached(
        out / "scores" / f"codes-seed{seed}.json",
        lambda: code_separation(StyleCodeHarmonizer.load(run), study, CODE_PEOPLE),
    )


def markdown(summary: dict) -> str:
    lines = [
        f"# Unpaired dMRI benchmark ({summary['budget']})",
        "",
        f"Command: `{summary['command']}`; commit "
        f"{summary['commit'][:10]}; machine {summary['machine']['node']} ({summary['machine']['cpus']} cores).",
        "",
    ]
    for target, t in summary["targets"].items():
        lines += [
            f"## Target {target} ({'seen' if t['seen'] else 'unseen'} in training), {t['n_people']} people harmonized",
            "",
            "| row | FA error (truth) | MD error (truth, 1e-3 mm²/s) | FA bias | MD bias (1e-3 mm²/s) | regional FA effect "
            "| global MD effect | age MD slope | site accuracy |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in list(summary["rows"]) + ["truth"]:
            r, e = t["rows"].get(row, {}), t["effects"].get(row, {})
            if not r and not e:
                continue

            def cell(v, scale=1.0):
                return f"{v['mean'] * scale:.4f} [{v['ci95'][0] * scale:.4f}, {v['ci95'][1] * scale:.4f}]" if v else ""

            def eff(v):
                return f"{v['mean']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]" if v else ""

            acc = e.get("site_accuracy")
            lines.append(
                f"| {row} | {cell(r.get('fa_truth'))} | {cell(r.get('md_truth'), 1e3)} | {cell(r.get('fa_bias'))} | "
                f"{cell(r.get('md_bias'), 1e3)} | {eff(e.get('regional_fa'))} | "
                f"{eff(e.get('global_md'))} | {eff(e.get('age_md'))} | {'' if acc is None else f'{acc:.2f}'} |"
            )
        lines.append("")
    lines += [
        f"Site classifier: chance {summary['chance']:.2f}; the truth row's accuracy is what the people alone give "
        "(site is confounded with age and diagnosis), the level harmonized data should come down to.",
        "",
        "## Goals",
        "",
        "| target | goal | a | b | metric | value | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for g in summary["goals"]:
        val = "not run" if g["mean"] is None else f"{g['mean']:.3f} [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]"
        lines.append(
            f"| {g['target']} | {g['name']} ({g['goal']}) | {g['a']} | {g['b'] or ''} | {g['metric']} | {val} | {g['met']} |"
        )
    seen = set(summary["settings"]["seen"])
    for seed, c in summary.get("codes", {}).items():
        lines += [
            "",
            f"## stylecode's scanner codes (training run {seed})",
            "",
            f"Whole-scan codes of {CODE_PEOPLE} people per site: leave-one-out nearest-centroid site accuracy "
            f"{c['loo_accuracy']:.2f} (chance {c['chance']:.2f}); cosine distances:",
            "",
            "| site | in training | between its people | to the nearest other site |",
            "| --- | --- | --- | --- |",
        ]
        for site, v in c["sites"].items():
            lines.append(
                f"| {site} | {'yes' if site in seen else 'no'} | {v['within']:.3f} | {v['to_nearest_site']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", choices=sorted(SETTINGS), default="cpu")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--record", type=Path, help="folder (under version control) for unpaired-<budget>.json and .md")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    b = SETTINGS[args.budget]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    from mrharmony.data.study import load_study

    study_root = make_study(out, b, args)
    study = load_study(study_root)
    models: dict = {"stylecode": {seed: train_stylecode(out, study_root, b, seed, args) for seed in b["seeds"]}}
    models["msp"] = train_msp(out, traveling_heads(out, study_root, b, args), b)
    methods = ["rish"] + (["combat", "combat_location"] if environment_has_combat() else [])
    for m in methods:
        models[m] = {(s, t): fit_pair(out, study, m, s, t, b) for t in b["targets"] for s in study.sites if s != t}
    results = {t: score_target(out, study_root, t, b, models, args) for t in b["targets"]}
    summary = summarize(results, b, study_root, args)
    summary["codes"] = {seed: codes_of_run(out, study, run, seed) for seed, run in models["stylecode"].items()}
    text = markdown(summary)
    dump_json(out / "summary.json", summary)
    (out / "summary.md").write_text(text)
    if args.record:
        dump_json(args.record / f"unpaired-{args.budget}.json", summary)
        (args.record / f"unpaired-{args.budget}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
