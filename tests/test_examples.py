from pathlib import Path

import pytest

from mrharmony.dmri.run_config import load_run_config

FOLDER = Path(__file__).parent.parent / "examples"
IMAGE_METHODS = (
    "hail.yaml",
    "hail_unet.yaml",
    "hail_residual.yaml",
    "ihf.yaml",
    "ihf_squeeze.yaml",
    "ihf_residual.yaml",
)  # mrharmony structural train
STUDY_METHODS = ("rish-study.yaml", "combat-study.yaml")  # fitted on a multi-site study
UNPAIRED_METHODS = ("stylecode-study.yaml",)  # trained on a multi-site study
EXAMPLES = sorted(p for p in FOLDER.glob("*.yaml") if p.name not in IMAGE_METHODS + STUDY_METHODS + UNPAIRED_METHODS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_are_valid(path):
    cfg = load_run_config(path)
    assert cfg.preset == "demo" and cfg.data.dataset.endswith("demo-output/data")


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_image_method_example_configs_are_valid(name):
    from mrharmony.structural.config import load_structural_config

    cfg = load_structural_config(FOLDER / name)
    assert cfg.preset == "demo" and cfg.data.dataset.endswith("demo-output/structural")
    assert cfg.model.method == name.removesuffix(".yaml").split("_")[0]
    if cfg.model.method == "hail":  # the paper's decoder, or the U-Net variant its file is named after
        assert cfg.model.skips == ("unet" in name) and cfg.model.residual == ("residual" in name)
        assert cfg.model.row_name() == name.removesuffix(".yaml")
    if cfg.model.method == "ihf":  # the paper's flow, or the variant its file is named after
        assert cfg.model.row_name() == name.removesuffix(".yaml")
        assert cfg.model.flow == (name.removesuffix(".yaml").split("_")[1] if "_" in name else "hierarchy")


@pytest.mark.parametrize("name", STUDY_METHODS)
def test_study_example_configs_are_valid(name):
    from mrharmony.dmri.study_fit import load_study_config

    cfg = load_study_config(FOLDER / name)
    assert cfg.data.study.endswith("/study") and cfg.model["method"] == name.split("-")[0]


@pytest.mark.parametrize("name", UNPAIRED_METHODS)
def test_unpaired_example_configs_are_valid(name):
    from mrharmony.dmri.stylecode import load_stylecode_config

    cfg = load_stylecode_config(FOLDER / name)
    assert cfg.data.study.endswith("/study") and cfg.model.method == name.split("-")[0]
