"""Model cards: what a saved model is, what it learned from and what it is for.

Models travel between labs; a model file says what it is without the run directory beside it.
Every saved model (a network's ``model.pt``, a statistical method's ``harmonizer.json``) carries
its card in its metadata (``meta["card"]``), made by its wing when it is trained:

* ``wing``, ``method`` and ``variant`` (the row name, e.g. ``diqt_scannorm``);
* ``training_data``: the dataset, its platforms or sites with their protocols (shells, voxel
  size, directions, TE), the subjects it was fitted on and those held out;
* ``budget`` (the training settings) and ``seed``; ``validation`` (the best validation loss and
  its epoch, filled in by the training engine when the model is saved);
* ``mrharmony_version``, ``format_version``, ``intended_use`` and ``limits``.

``mrharmony card MODEL`` prints it; harmonized outputs name its hash (``ModelCardSHA256`` in their
sidecars); the HTML report's provenance shows it. Models saved before cards get one made from
what their metadata records (``derived: true``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mrharmony.errors import InputError

#: the order in which a card is printed
FIELDS = ("wing", "method", "variant", "training_data", "budget", "seed", "validation", "mrharmony_version",
          "format_version", "intended_use", "limits")


def make_card(*, wing: str, method: str, variant: str, training_data: dict, budget: dict, seed: int | None,
              intended_use: str, limits: str) -> dict:
    """A model card (see the module docstring); ``validation`` is filled in when the model is saved."""
    from mrharmony import FORMAT_VERSION, __version__

    return {"wing": wing, "method": method, "variant": variant, "training_data": training_data, "budget": budget,
            "seed": seed, "validation": None, "mrharmony_version": __version__, "format_version": FORMAT_VERSION,
            "intended_use": intended_use, "limits": limits}


def protocol(spec) -> dict:
    """The protocol of a platform or site as a card records it (a ``PlatformSpec``-like object:
    name, role, voxel size, b-values, directions, TE, scanner; what it lacks is left out)."""
    keys = ("name", "role", "voxel_size", "bvalues", "n_directions", "te_ms", "scanner", "protocol")
    out = {}
    for k in keys:
        v = getattr(spec, k, None)
        if v is not None:
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def card_of(meta: dict) -> dict:
    """The card of a saved model's metadata; for a model saved before cards, one derived from what
    its metadata records (``derived: true``)."""
    if isinstance(meta.get("card"), dict):
        return meta["card"]
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return {"derived": True, "wing": None, "method": model.get("method") or meta.get("method"),
            "variant": meta.get("label"), "training_data": {"dataset": data.get("dataset"),
                                                            "targets": meta.get("targets")},
            "budget": None, "seed": None,
            "validation": ({"best_validation_loss": meta["best_validation_loss"], "best_epoch": meta.get("best_epoch")}
                           if "best_validation_loss" in meta else None),
            "mrharmony_version": meta.get("mrharmony_version"), "format_version": None,
            "intended_use": None, "limits": "saved before model cards: only what its metadata records is known"}


def card_hash(card: dict) -> str:
    """SHA-256 of the card's canonical JSON (sorted keys): what harmonized outputs name."""
    return hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()


def read_card(path: str | os.PathLike) -> tuple[dict, Path]:
    """(card, file) of a saved model: a run directory, its ``model.pt``, or a statistical
    method's folder with ``harmonizer.json``. Opening reads tensors and plain values only."""
    from mrharmony.engine.checkpoint import model_file, read_checkpoint

    path = Path(path)
    if path.is_dir() and (path / "harmonizer.json").is_file():
        file = path / "harmonizer.json"
        try:
            d = json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError):
            raise InputError("is not valid JSON.", file) from None
        meta = d.get("meta") if isinstance(d.get("meta"), dict) else {}
        return card_of({"method": d.get("method"), **meta}), file
    file = model_file(path)
    meta = read_checkpoint(file).get("meta", {})
    return card_of(meta if isinstance(meta, dict) else {}), file


def card_text(card: dict, file: Path | None = None) -> str:
    """The card as text to print: one ``key: value`` line per field, nested values indented."""

    def lines(value, indent: str) -> list[str]:
        out = []
        for k, v in value.items():
            if isinstance(v, dict):
                out += [f"{indent}{k}:", *lines(v, indent + "  ")]
            elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
                out.append(f"{indent}{k}:")
                for x in v:
                    inner = lines(x, indent + "    ") if isinstance(x, dict) else [f"{indent}    {x}"]
                    out += [f"{indent}  - {inner[0].strip()}", *inner[1:]]
            else:
                out.append(f"{indent}{k}: {_short(v)}")
        return out

    ordered = {k: card[k] for k in FIELDS if k in card} | {k: v for k, v in card.items() if k not in FIELDS}
    head = [f"model card of {file}"] if file is not None else []
    return "\n".join(head + lines(ordered, "") + [f"card SHA-256: {card_hash(card)}"])


def _short(v) -> str:
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return "-" if v is None else str(v)
