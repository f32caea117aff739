"""Harmonization changes what the site did, never what the person has: a more atrophied brain
(thinner cortex, larger ventricles) keeps its tissue-volume difference through every intensity
baseline that claims to keep it (``keeps_differences``), harmonized on files; one that does not
claim it is shown to change it, so that no claim goes stale. The trained methods: test_training.py
and test_flow_training.py."""

import pytest
import yaml

from mrharmony.structural.registry import INTENSITY_METHODS, intensity_harmonizer
from tests.structural.keeping import assert_claim, atrophy_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from mrharmony.simulate.structural import default_sites_path, simulate_structural

    folder = tmp_path_factory.mktemp("atrophy")
    sites = yaml.safe_load(default_sites_path().read_text())
    sites["sites"] = [
        {k: v for k, v in s.items() if k not in ("t2w", "flair")}
        for s in sites["sites"]
        if s["name"] in ("siteA", "siteB")
    ]
    (folder / "sites.yaml").write_text(yaml.safe_dump(sites))
    root = simulate_structural(
        folder / "small",
        preset="small",
        seed=8,
        n_subjects=2,
        sites_file=folder / "sites.yaml",
        rescans=False,
        quiet=True,
    )
    return atrophy_files(root, "sub-02", "siteA", "sub-01", "siteB", folder / "files")


@pytest.mark.parametrize("method", INTENSITY_METHODS)
def test_an_atrophy_difference_survives_every_baseline_that_claims_to_keep_it(files, method):
    assert_claim(files, method, intensity_harmonizer(method).keeps_differences)
