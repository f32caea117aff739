"""The dMRI benchmarks' summary: which rows are learned, and the metrics of multi-shell targets."""

import pytest

from mrharmony.bench.dmri_summary import chosen_rows, is_statistical, metric_sources


@pytest.mark.parametrize(
    ("row", "statistical"),
    [
        ("none", True),
        ("none_mppca", True),
        ("rish_syn_mppca", True),
        ("combat_mppca", True),
        ("meanvar_global", True),
        ("diqt_residual", False),
        ("diqt_primary", False),
        ("msp_scannorm", False),
        ("first_stage_continued", False),
    ],
)
def test_practice_rows_are_non_learned_rows(row, statistical):
    assert is_statistical(row) is statistical


def test_the_best_learned_row_is_never_a_practice_row():
    rows = {
        "none": {"fa_noiseless": {"a": 0.05, "b": 0.05}},
        "rish_syn_mppca": {"fa_noiseless": {"a": 0.01, "b": 0.01}},
        "diqt_primary": {"fa_noiseless": {"a": 0.03, "b": 0.03}},
    }
    _, _, learned, non_learned = chosen_rows(rows, "fa_noiseless")
    assert (learned, non_learned) == ("diqt_primary", "rish_syn_mppca")


def test_per_shell_metrics_are_kept_under_their_own_names():
    row = {"fa_mae": 0.1, "mk_mae_noiseless": 0.2, "rish_rel_b3000_noiseless": 0.3, "rish_rel_b1200": 0.4}
    sources = dict(metric_sources(row))
    assert sources["mk_noiseless"] == "mk_mae_noiseless" and sources["fa_scan"] == "fa_mae"
    assert sources["rish_rel_b3000_noiseless"] == "rish_rel_b3000_noiseless" and "rish_rel_b1200" in sources
