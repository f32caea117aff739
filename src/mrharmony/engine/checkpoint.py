"""Saved models and resumable training states: one file format for every method family.

A saved model (``model.pt`` of a run directory) is a dict with the network's weights
(``state_dict``), the metadata needed to rebuild it (``meta``: the method and its settings, and
whatever its family records) and the ``format_version``; a training state
(``checkpoints/last.pt``) holds everything that resuming needs. Both are written atomically;
files from a newer format version are refused with one sentence.
"""

from __future__ import annotations

import os
from pathlib import Path

from mrharmony.errors import InputError


def parameter_count(net) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def cpu_state(net) -> dict:
    """A detached CPU copy of a module's weights."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def save_model(path: str | os.PathLike, net, meta: dict) -> None:
    """Write ``net``'s weights and ``meta`` as a saved model, atomically."""
    save_state(path, {"meta": meta, "state_dict": cpu_state(net)})


def save_state(path: str | os.PathLike, state: dict) -> None:
    """Write a dict of tensors and plain values (a model or a resumable training state) with the
    format version, atomically (a killed run never leaves a torn file)."""
    import torch

    from mrharmony import FORMAT_VERSION
    from mrharmony.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` with clear errors for a missing, truncated or newer-format file."""
    import pickle
    import zipfile

    import torch

    from mrharmony.io import check_format_version

    path = Path(path)
    if not path.is_file():
        raise InputError("is missing.", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"could not be read as a mrharmony model or checkpoint (truncated or corrupt: {reason}).",
                         path) from None
    if not isinstance(obj, dict) or "format_version" not in obj:
        raise InputError("is not a mrharmony model or checkpoint.", path)
    check_format_version(obj["format_version"], path)
    return obj


def load_weights(net, obj: dict, path: str | os.PathLike) -> None:
    """Put a saved model's weights into the network rebuilt from its metadata."""
    try:
        net.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"holds weights that do not fit its own description ({str(exc).splitlines()[0]}).",
                         path) from None


def model_file(path: str | os.PathLike) -> Path:
    """``model.pt`` of a run directory, or the file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def read_method_model(path: str | os.PathLike, method: str, name: str, command: str) -> tuple[dict, dict, Path]:
    """A saved model of one method (``model.pt`` or its run directory): (file contents, meta,
    file); a model of another method is refused, naming the command that trains ``name``."""
    path = model_file(path)
    obj = read_checkpoint(path)
    meta = obj.get("meta", {})
    found = meta.get("model", {}).get("method")
    if found != method:
        raise InputError(f"is a {found or 'non-' + name} model, not {'an' if name[0] in 'AEIOU' else 'a'} {name} "
                         f"model (train one with 'mrharmony {command}').", path)
    return obj, meta, path
