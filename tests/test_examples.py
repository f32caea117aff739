from pathlib import Path

import pytest

from mrharmony.training import load_run_config

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_are_valid(path):
    cfg = load_run_config(path)
    assert cfg.preset == "demo" and cfg.data.dataset.endswith("demo-output/data")
