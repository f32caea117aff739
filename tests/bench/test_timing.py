"""The step timing of a benchmark: intervals over resumed runs, pauses of a log left out."""

import json
import time

import pytest

from mrharmony.bench.timing import Timing, pauses_of


def _date(t: float) -> str:
    """A time as date(1) prints it in UTC, as the pause logs have it."""
    return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(t))


def test_pauses_are_read_from_the_log_and_notes_passed_over(tmp_path):
    log = tmp_path / "pauses.txt"
    log.write_text(
        f"{_date(1000)}: restarted after the session ended\n"
        f"paused (SIGSTOP) from {_date(1000)} for 30 s during the run (tests of a change)\n"
        f"paused (SIGSTOP) from Mon Nov  2 09:05:01 UTC 2026 for 2.5 s during fold-0 train\n"
    )
    first, second = pauses_of(log)
    assert first == (1000.0, 1030.0)
    assert second[1] - second[0] == 2.5 and _date(second[0]) == "Mon Nov 02 09:05:01 UTC 2026"
    assert pauses_of(None) == []


def test_a_steps_time_leaves_out_the_pauses_inside_it(tmp_path):
    timing = Timing(tmp_path / "timing.json")
    timing.intervals = {"train": [[1000.0, 1100.0], [2000.0, 2050.0]], "evaluate": [[3000.0, 3010.0]]}
    log = tmp_path / "pauses.txt"
    log.write_text(
        f"paused (SIGSTOP) from {_date(990)} for 20 s during train\n"  # 10 s inside the first interval
        f"paused (SIGSTOP) from {_date(2040)} for 100 s during train\n"  # the last 10 s of the second
        f"paused (SIGSTOP) from {_date(2500)} for 100 s during nothing\n"
    )  # between steps
    pauses = pauses_of(log)
    assert timing.seconds("train") == 150.0 and timing.seconds("train", pauses) == 130.0
    assert timing.seconds("evaluate", pauses) == 10.0 and timing.seconds("missing", pauses) == 0.0
    assert timing.hours(pauses) == pytest.approx(140.0 / 3600)


def test_steps_are_added_up_over_resumed_runs_and_the_first_layout_kept_apart(tmp_path):
    path = tmp_path / "timing.json"
    path.write_text(json.dumps({"data": 100.0}))  # the first layout: seconds per step
    timing = Timing(path)
    timing.HEARTBEAT = 0.05
    with timing.step("train"):
        time.sleep(0.2)
        during = json.loads(path.read_text())  # what a process killed now leaves behind
    assert len(during["intervals"]["train"]) == 1 and during["before_intervals"] == {"data": 100.0}
    resumed = Timing(path)  # a second invocation of the run
    with resumed.step("train"):
        pass
    written = json.loads(path.read_text())
    assert len(written["intervals"]["train"]) == 2 and written["before_intervals"] == {"data": 100.0}
    assert resumed.hours() == pytest.approx(resumed.seconds("train") / 3600)  # first-layout totals apart
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing.json"]  # written whole, nothing left beside


def test_an_interrupted_step_keeps_its_time(tmp_path):
    timing = Timing(tmp_path / "timing.json")
    with pytest.raises(KeyboardInterrupt), timing.step("train"):
        time.sleep(0.05)
        raise KeyboardInterrupt
    ((a, b),) = json.loads((tmp_path / "timing.json").read_text())["intervals"]["train"]
    assert b - a >= 0.05
