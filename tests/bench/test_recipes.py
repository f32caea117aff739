"""The named training recipes (mrharmony.dmri.recipes): valid run configs, and the example configs
that spell one out are that recipe. (Here beside the benchmarks that train them.)"""

from pathlib import Path

import pytest
import yaml

from mrharmony.dmri.config import PRESETS, TrainingConfig
from mrharmony.dmri.recipes import RECIPES, recipe

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_gives_a_valid_training_section(name):
    r = recipe(name)
    assert r.name == name and r.summary and r.steps >= 1
    section = r.training(epochs=6, lr_decay_every=2)
    assert list(section)[0] == "epochs" and section["epochs"] == 6 * r.steps
    TrainingConfig(**section)  # every option a named setting of the run config


def test_the_tuned_recipe_and_its_rivals():
    tuned = recipe("diqt_tuned")
    assert tuned.training(epochs=6) == {
        "epochs": 24,
        "augment": "flips",
        "loss_weighting": "order",
        "inputs": "sh+position",
        "lr_schedule": "cosine",
        "warmup_epochs": 1,
    }
    assert recipe("diqt_tuned_sh").options == {k: v for k, v in tuned.options.items() if k != "inputs"}
    assert recipe("diqt_long").training(epochs=6, lr_decay_every=2) == {"epochs": 24, "lr_decay_every": 8}
    with pytest.raises(ValueError, match="lr_decay_every"):
        recipe("diqt_long").training(epochs=6)
    with pytest.raises(KeyError, match="no recipe 'diqt_fast'; the recipes are diqt_tuned"):
        recipe("diqt_fast")


def test_a_run_config_of_a_recipe_takes_its_presets_schedule():
    data = {"dataset": "../data", "targets": ["prisma_st"]}
    cfg = recipe("diqt_tuned").run_config(preset="demo", data=data)
    assert list(cfg) == ["preset", "label", "data", "model", "training"]
    assert cfg["label"] == "diqt_tuned" and cfg["model"] == {"method": "diqt"} and cfg["data"] == data
    assert cfg["training"]["epochs"] == 4 * PRESETS["demo"]["epochs"]
    long = recipe("diqt_long").run_config(preset="paper", data=data, epochs=6, label="mine")
    assert long["label"] == "mine" and long["training"] == {"epochs": 24, "lr_decay_every": 4 * 15}
    cfg["model"]["skip"] = True  # a config of its own: the recipe is not changed
    assert recipe("diqt_tuned").model == {"method": "diqt"}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("diqt_tuned-*.yaml")), ids=lambda p: p.name)
def test_an_example_of_the_tuned_recipe_is_the_recipe_in_code(path):
    cfg = yaml.safe_load(path.read_text())
    made = recipe("diqt_tuned").run_config(preset=cfg["preset"], data=cfg["data"])
    assert cfg == made
    assert "mrharmony.dmri.recipes" in path.read_text()  # it says which recipe it is


def test_there_is_an_example_of_the_tuned_recipe():
    assert list(EXAMPLES.glob("diqt_tuned-*.yaml"))
