"""Resumable steps and the record: what a run copies into a version-controlled folder, and what a
machine that lost the output gets back."""

import json

import pytest

from mrharmony.bench.plan import SettingError
from mrharmony.bench.record import (
    check_record,
    done,
    invocations,
    log_invocation,
    mark_done,
    recorded_only,
    restore_record,
    save_record,
)

FILES = ("evaluation/evaluation.json", "evaluation/evaluation.json.runs", "score.json", "score.json.runs")
MARKER = "evaluation/evaluation.json.runs"


def _fold(root, fold, seed, *, score=True):
    """A fake finished fold and seed: its evaluation, its score and its (unrecorded) runs."""
    work = root / f"fold-{fold}" / f"seed-{seed}"
    (work / "runs" / "diqt-prisma_st").mkdir(parents=True)
    (work / "runs" / "diqt-prisma_st" / "model.pt").write_text("weights")
    (work / "evaluation").mkdir()
    (work / "evaluation" / "evaluation.json").write_text(json.dumps({"fold": fold, "seed": seed}))
    (work / "evaluation" / "table.md").write_text("| a table |\n")
    mark_done(work / "evaluation" / "evaluation.json", ["diqt-prisma_st"])
    if score:
        (work / "score.json").write_text("{}")
        mark_done(work / "score.json", ["diqt-prisma_st"])
    return work


def test_a_step_is_done_when_made_from_the_same_runs(tmp_path):
    out = tmp_path / "evaluation.json"
    assert not done(out, ["a"])
    out.write_text("{}")
    assert not done(out, ["a"])  # written, not marked: an interrupted step
    mark_done(out, ["a", "b"])
    assert json.loads((tmp_path / "evaluation.json.runs").read_text()) == ["a", "b"]
    assert done(out, ["a", "b"]) and not done(out, ["a", "b", "c"])  # a row added since: redone


def test_the_record_round_trip_brings_back_the_small_files_and_not_the_models(tmp_path):
    root, record, fresh = tmp_path / "out", tmp_path / "record", tmp_path / "fresh"
    works = [_fold(root, 0, 0), _fold(root, 1, 0, score=False), _fold(root, 0, 1)]
    (root / "timing.json").write_text(json.dumps({"intervals": {"data": [[0, 1]]}}))
    for work in works:
        save_record(record, root, work, FILES)
    save_record(None, root, works[0], FILES)  # no record: nothing to do
    kept = sorted(str(p.relative_to(record)) for p in record.rglob("*") if p.is_file())
    assert kept == sorted(
        [f"fold-{f}/seed-{s}/{name}" for f, s in [(0, 0), (0, 1)] for name in FILES]
        + [f"fold-1/seed-0/{name}" for name in FILES[:2]]
        + ["timing.json"]
    )
    assert not list(record.rglob(".*"))  # copied whole: no temporary file left beside
    (record / "notes.txt").write_text("a log kept beside the record\n")

    assert restore_record(record, fresh, FILES, MARKER) == ["fold-0/seed-0", "fold-0/seed-1", "fold-1/seed-0"]
    for work in works:
        rel = work.relative_to(root)
        for name in FILES:
            assert (fresh / rel / name).exists() == (work / name).exists()
            if (work / name).exists():
                assert (fresh / rel / name).read_bytes() == (work / name).read_bytes()
        assert not (fresh / rel / "runs").exists() and not (fresh / rel / "evaluation" / "table.md").exists()
    assert not (fresh / "notes.txt").exists()
    assert (fresh / "timing.json").read_bytes() == (root / "timing.json").read_bytes()
    # finished elsewhere: every marker restored, its runs not here
    assert recorded_only(fresh / "fold-0" / "seed-0", [MARKER, "score.json.runs"])
    assert not recorded_only(fresh / "fold-1" / "seed-0", [MARKER, "score.json.runs"])  # its score is missing
    assert recorded_only(fresh / "fold-1" / "seed-0", [MARKER])
    assert not recorded_only(root / "fold-0" / "seed-0", [MARKER])  # its runs are here: its steps are checked
    # what the machine has already is not overwritten, and nothing is said restored
    (fresh / "timing.json").write_text("{}")
    assert restore_record(record, fresh, FILES, MARKER) == [] and (fresh / "timing.json").read_text() == "{}"


def test_a_record_updated_after_a_step_holds_the_newest_files(tmp_path):
    root, record = tmp_path / "out", tmp_path / "record"
    work = _fold(root, 0, 0)
    save_record(record, root, work, FILES)
    (work / "score.json").write_text('{"again": true}')
    save_record(record, root, work, FILES)
    assert (record / "fold-0" / "seed-0" / "score.json").read_text() == '{"again": true}'


def test_a_record_must_be_a_folder_of_its_own(tmp_path):
    check_record(None, tmp_path / "out")
    check_record(tmp_path / "record", tmp_path / "out")  # made when the first step finishes
    note = tmp_path / "note.txt"
    note.write_text("x\n")
    with pytest.raises(SettingError, match=f"^--record {note} is not a folder.$"):
        check_record(note, tmp_path / "out")
    with pytest.raises(SettingError, match="^--record must be a folder other than --out.$"):
        check_record(tmp_path / "out" / ".." / "out", tmp_path / "out")


def test_invocations_are_logged_oldest_first_in_the_record(tmp_path):
    root, record = tmp_path / "out", tmp_path / "record"
    assert invocations(root, record) == []
    log_invocation(root, record, "python benchmarks/x.py --a", tmp_path)  # no git checkout here
    log_invocation(root, record, "python benchmarks/x.py --b", tmp_path)
    logged = invocations(root, record)
    assert [i["command"] for i in logged] == ["python benchmarks/x.py --a", "python benchmarks/x.py --b"]
    assert all(i["commit"] is None and i["started"].endswith(" UTC") for i in logged)
    assert not (root / "invocations.json").exists()
    log_invocation(root, None, "python benchmarks/x.py", tmp_path)  # no record: in the output
    assert len(invocations(root, None)) == 1
