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
FIELDS = (
    "wing",
    "method",
    "variant",
    "training_data",
    "budget",
    "seed",
    "validation",
    "mrharmony_version",
    "format_version",
    "intended_use",
    "limits",
)


def make_card(
    *,
    wing: str,
    method: str,
    variant: str,
    training_data: dict,
    budget: dict | None,
    seed: int | None,
    intended_use: str,
    limits: str,
) -> dict:
    """A new model card (see the module docstring).

    Parameters
    ----------
    wing
        ``dmri`` or ``structural``.
    method
        The method's name in its wing's registry.
    variant
        The row name (e.g. ``diqt_scannorm``).
    training_data
        The dataset, its platforms or sites with their protocols (:func:`protocol`), the subjects
        it was fitted on and those held out.
    budget
        The training settings (None for a method fitted in one pass, a statistical one).
    seed
        The seed of the training run (None where nothing is drawn).
    intended_use, limits
        One sentence each.

    Returns
    -------
    dict
        The card, its fields in :data:`FIELDS` order; ``validation`` is None until the training
        engine fills it in when the model is saved.
    """
    from mrharmony import FORMAT_VERSION, __version__

    return {
        "wing": wing,
        "method": method,
        "variant": variant,
        "training_data": training_data,
        "budget": budget,
        "seed": seed,
        "validation": None,
        "mrharmony_version": __version__,
        "format_version": FORMAT_VERSION,
        "intended_use": intended_use,
        "limits": limits,
    }


def protocol(spec) -> dict:
    """The protocol of a platform or site as a card records it.

    Parameters
    ----------
    spec
        A ``PlatformSpec``-like object (:class:`~mrharmony.data.dataset.PlatformSpec`, a site).

    Returns
    -------
    dict
        Its name, role, voxel size, b-values, directions, TE, scanner and protocol, leaving out
        what it lacks; tuples become lists.
    """
    keys = ("name", "role", "voxel_size", "bvalues", "n_directions", "te_ms", "scanner", "protocol")
    out = {}
    for k in keys:
        v = getattr(spec, k, None)
        if v is not None:
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def card_of(meta: dict) -> dict:
    """The card of a saved model's metadata.

    Parameters
    ----------
    meta
        The metadata of a saved model (``meta`` of ``model.pt`` or of ``harmonizer.json``).

    Returns
    -------
    dict
        Its card; for a model saved before cards, one derived from what its metadata records
        (``derived: true``).

    Examples
    --------
    >>> card = card_of({"method": "rish", "label": "rish"})
    >>> card["derived"], card["method"], card["variant"]
    (True, 'rish', 'rish')
    """
    if isinstance(meta.get("card"), dict):
        return meta["card"]
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return {
        "derived": True,
        "wing": None,
        "method": model.get("method") or meta.get("method"),
        "variant": meta.get("label"),
        "training_data": {"dataset": data.get("dataset"), "targets": meta.get("targets")},
        "budget": None,
        "seed": None,
        "validation": (
            {"best_validation_loss": meta["best_validation_loss"], "best_epoch": meta.get("best_epoch")}
            if "best_validation_loss" in meta
            else None
        ),
        "mrharmony_version": meta.get("mrharmony_version"),
        "format_version": None,
        "intended_use": None,
        "limits": "saved before model cards: only what its metadata records is known",
    }


def card_hash(card: dict) -> str:
    """The hash that harmonized outputs name (``ModelCardSHA256`` in their sidecars).

    Parameters
    ----------
    card
        A model card.

    Returns
    -------
    str
        The hexadecimal SHA-256 of the card's canonical JSON (sorted keys).
    """
    return hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()


def read_card(path: str | os.PathLike) -> tuple[dict, Path]:
    """The card of a saved model of either wing, read from its file.

    Opening reads tensors and plain values only (:func:`mrharmony.engine.checkpoint.read_checkpoint`).

    Parameters
    ----------
    path
        A run directory, its ``model.pt``, or a statistical method's folder with
        ``harmonizer.json``.

    Returns
    -------
    tuple of (dict, pathlib.Path)
        The card (:func:`card_of`) and the file it was read from.

    Raises
    ------
    InputError
        A file that is missing, not valid JSON, or not a model that opens safely: one sentence
        naming the file.

    Examples
    --------
    >>> card, file = read_card("runs/diqt")                                 # doctest: +SKIP
    >>> print(card_text(card, file))                                        # doctest: +SKIP
    """
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
    """The card as text to print (``mrharmony card``).

    Parameters
    ----------
    card
        A model card.
    file
        The file it was read from, named in the first line.

    Returns
    -------
    str
        One ``key: value`` line per field (in :data:`FIELDS` order, then any others), nested
        values indented, and last the card's hash (:func:`card_hash`).
    """

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
