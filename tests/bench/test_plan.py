"""Folds over subjects and seeds, and the order a benchmark runs them in."""

import pytest

from mrharmony.bench.plan import Plan, SettingError, folds_of, work_dir


def test_folds_hold_every_subject_out_once_and_are_the_same_every_time():
    subjects = [f"sub-{i:02d}" for i in range(1, 11)]
    folds = folds_of(subjects, 4)
    assert sorted(s for part in folds for s in part) == subjects
    assert sorted(len(part) for part in folds) == [2, 2, 3, 3] and all(part == sorted(part) for part in folds)
    assert folds_of(subjects, 4) == folds and folds_of(subjects, 5) != folds


def test_the_first_seed_of_every_fold_runs_before_the_further_seeds():
    plan = Plan(folds=3, seeds=[5, 1, 2], seed_folds=2)
    assert plan.seeds_of(0) == [5, 1, 2] and plan.seeds_of(2) == [5]
    assert plan.run_order() == [(0, 5), (1, 5), (2, 5), (0, 1), (0, 2), (1, 1), (1, 2)]
    assert plan.pairs() == [(0, 5), (0, 1), (0, 2), (1, 5), (1, 1), (1, 2), (2, 5)]
    assert sorted(plan.run_order()) == sorted(plan.pairs())
    assert Plan(folds=2, seeds=[0], seed_folds=None).run_order() == [(0, 0), (1, 0)]


def test_scored_pairs_are_those_whose_step_is_finished(tmp_path):
    plan = Plan(folds=2, seeds=[0, 1], seed_folds=None)
    for f, s in [(1, 0), (0, 1)]:
        marker = work_dir(tmp_path, f, s) / "evaluation" / "evaluation.json.runs"
        marker.parent.mkdir(parents=True)
        marker.write_text("[]\n")
    (work_dir(tmp_path, 0, 0) / "evaluation").mkdir(parents=True)  # started, not finished
    assert plan.scored(tmp_path, "evaluation/evaluation.json.runs") == [(0, 1), (1, 0)]
    assert plan.scored(tmp_path / "elsewhere", "evaluation/evaluation.json.runs") == []


@pytest.mark.parametrize(
    "plan, n, message",
    [
        (Plan(1, [0]), 10, "--folds must be at least 2, not 1."),
        (Plan(4, [0]), 3, "--folds 4 needs at least 4 subjects; the preset has 3."),
        (Plan(2, [0]), 3, "with 3 subjects and 2 folds fewer than 2 subjects are left to train on."),
        (Plan(3, [1, 1]), 10, "--seeds must be distinct non-negative integers."),
        (Plan(3, [-1]), 10, "--seeds must be distinct non-negative integers."),
        (Plan(3, [0, 1], 4), 10, "--seed-folds must be between 1 and --folds (3), not 4."),
    ],
)
def test_impossible_folds_and_seeds_are_refused_in_one_sentence(plan, n, message):
    with pytest.raises(SettingError) as e:
        plan.check(n)
    assert str(e.value) == message


def test_possible_folds_and_seeds_pass():
    Plan(5, [0, 1, 2], 1).check(10)
    Plan(3, [0], None).check(3)
