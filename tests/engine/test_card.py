"""Every saved model carries a model card: what it is, what it learned from, what it is for; a
command prints it, harmonized outputs name its hash, a model saved before cards gets a derived one."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from mrharmony.cli import main
from mrharmony.engine.card import card_hash, card_of, card_text, read_card


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_prepared):
    """A small DIQT run and a RISH fit on the same split (sub-03 held out)."""
    base = tmp_path_factory.mktemp("card")
    data = {"dataset": str(tiny_prepared), "split": "subject", "test_subjects": ["sub-03"], "targets": ["prisma_st"]}
    for name, model in (("diqt", {"method": "diqt"}), ("rish", {"method": "rish"})):
        cfg = base / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"preset": "test", "data": data, "model": model, "training": {"epochs": 1}}))
        assert main(["dmri", "train", str(cfg), "--out", str(base / name), "--quiet"]) == 0
    return base


def test_a_trained_network_carries_its_card(runs):
    card, file = read_card(runs / "diqt")
    assert file == runs / "diqt" / "model.pt"
    assert (card["wing"], card["method"], card["variant"]) == ("dmri", "diqt", "diqt")
    data = card["training_data"]
    assert data["synthetic"] and data["subjects_held_out"] == ["sub-03"] and "sub-03" not in data["subjects_fitted_on"]
    first, target = data["platforms"]
    assert first["role"] == "input" and target["name"] == "prisma_st"
    for key in ("voxel_size", "bvalues", "n_directions", "te_ms"):
        assert key in first and key in target, key
    assert card["budget"]["epochs"] == 1 and card["seed"] == 0 and card["format_version"] == 2
    assert card["validation"]["best_epoch"] == 1 and card["validation"]["best_validation_loss"]["prisma_st"] > 0
    assert "synthetic data" in card["limits"] and card["intended_use"]


def test_a_statistical_fit_carries_its_card(runs):
    card, file = read_card(runs / "rish")
    assert file.name == "harmonizer.json" and card["method"] == "rish" and card["budget"] is None
    assert card["training_data"]["subjects_held_out"] == ["sub-03"]


def test_the_card_command_and_the_sidecars_name_the_same_card(runs, tiny_prepared, tmp_path, capsys):
    assert main(["card", str(runs / "diqt"), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card == read_card(runs / "diqt")[0]
    assert main(["card", str(runs / "rish")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("model card of ") and "method: rish" in text and "intended_use:" in text
    scan = tiny_prepared / "sub-03" / "ge_st"
    assert (
        main(
            [
                "dmri",
                "apply",
                str(runs / "diqt"),
                "--dwi",
                str(scan / "dwi.nii.gz"),
                "--bval",
                str(scan / "dwi.bval"),
                "--bvec",
                str(scan / "dwi.bvec"),
                "--out",
                str(tmp_path / "h"),
                "--quiet",
            ]
        )
        == 0
    )
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / "h").glob("*space-*.json")]
    assert sidecars and {s["ModelCardSHA256"] for s in sidecars} == {card_hash(card)}


def test_a_model_saved_before_cards_gets_a_derived_one(runs, tmp_path, capsys):
    shutil.copytree(runs / "diqt", tmp_path / "old")
    obj = torch.load(tmp_path / "old" / "model.pt", weights_only=True)
    del obj["meta"]["card"]
    torch.save(obj, tmp_path / "old" / "model.pt")
    card, _ = read_card(tmp_path / "old")
    assert card["derived"] and card["method"] == "diqt" and "before model cards" in card["limits"]
    assert card["validation"]["best_validation_loss"] == obj["meta"]["best_validation_loss"]
    assert main(["card", str(tmp_path / "old")]) == 0 and "derived: True" in capsys.readouterr().out


def test_an_unreadable_model_is_refused_in_one_sentence(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"not a model")
    assert main(["card", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.pt" in err


def test_card_text_prints_every_field_in_order():
    card = card_of(
        {
            "card": {
                "limits": "l",
                "wing": "dmri",
                "method": "m",
                "training_data": {"platforms": [{"name": "a", "bvalues": [0, 1000]}]},
            }
        }
    )
    text = card_text(card)
    assert text.index("wing: dmri") < text.index("method: m") < text.index("limits: l")
    assert "  - name: a" in text and "bvalues: 0, 1000" in text and text.endswith(card_hash(card))
