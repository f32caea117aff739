from pathlib import Path

import pytest

from mrharmony.training import load_run_config

FOLDER = Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(p for p in FOLDER.glob("*.yaml") if p.name != "hail.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_are_valid(path):
    cfg = load_run_config(path)
    assert cfg.preset == "demo" and cfg.data.dataset.endswith("demo-output/data")


def test_hail_example_config_is_valid():
    from mrharmony.structural_training import load_structural_config

    cfg = load_structural_config(FOLDER / "hail.yaml")
    assert cfg.preset == "demo" and cfg.data.dataset.endswith("demo-output/structural")
