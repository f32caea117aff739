"""The benchmark scripts refuse impossible settings with one sentence, exit 2, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args, message", [
    (["--folds", "1"], "--folds must be at least 2, not 1."),
    (["--folds", "4"], "--folds 4 needs at least 4 subjects; the preset has 3."),
    (["--seeds", "1", "1"], "--seeds must be distinct non-negative integers."),
    (["--seed-folds", "4"], "--seed-folds must be between 1 and --folds (3), not 4."),
    (["--cohort", "3"], "--cohort needs at least 4 subjects (2 controls, 2 patients), not 3."),
    (["--preset", "huge"], "unknown --preset 'huge'; choose one of tiny, demo, mushac."),
])
def test_dmri_benchmark_refuses_impossible_settings(tmp_path, args, message):
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dmri.py"), "--budget", "smoke", "--out", str(out),
                        *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"dmri.py: error: {message}"
    assert not out.exists()


def test_simulate_refuses_a_cohort_too_small(tmp_path):
    from mrharmony.cli import main

    assert main(["simulate", str(tmp_path / "c"), "--preset", "tiny", "--cohort", "2", "--quiet"]) == 2
    assert not (tmp_path / "c").exists()
