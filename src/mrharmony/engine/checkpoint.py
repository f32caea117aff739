"""Saved models and resumable training states: one file format for every method family.

A saved model (``model.pt`` of a run directory) is a dict with the network's weights
(``state_dict``), the metadata needed to rebuild it (``meta``: the method and its settings, and
whatever its family records) and the ``format_version``; a training state
(``checkpoints/last.pt``) holds everything that resuming needs. Both are written atomically.

Opening a file never runs code from it. Models travel between labs, and a pickle can call any
function while it is unpickled; so :func:`save_state` writes only tensors and plain values (dict,
list, tuple, str, int, float, bool, None; :func:`check_plain` refuses anything else before a byte
is written), and :func:`read_checkpoint`, the one way the package opens a model or a training
state, reads with ``torch.load(weights_only=True)``, whose unpickler builds nothing else. A file
holding anything else is refused with one sentence before any of it is built; so is a file that is
not the zip archive ``torch.save`` writes (a bare pickle is never unpickled). No global is added to
torch's allowlist (not even numpy's array reconstruction, which torch leaves out on purpose).

Format versions (:data:`mrharmony.FORMAT_VERSION`): :func:`read_checkpoint` dispatches on the
file's ``format_version`` alone, never on which keys a file happens to hold. A file of version
``v`` older than the current one passes through :data:`MIGRATIONS` ``[v]``, ``[v + 1]``, ... each
of which turns the contents of its version into those of the next; a newer version is refused.

* 1 (mrharmony up to 0.1.0): the layout above, written with ``torch.save`` of whatever the
  trainee gave, read with ``weights_only=False``. The files mrharmony wrote in that version hold
  only tensors and plain values (training states: torch's generator state as a tensor, no numpy
  or Python generator state; metadata: plain numbers, strings and lists), checked for every
  method family: they open under ``weights_only=True`` and migrate unchanged. A version-1 file
  holding anything else is refused like any other such file: retrain the model.
* 2: the same layout, guaranteed tensors and plain values by :func:`save_state`.
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


#: what a saved file may hold besides tensors and the containers (dict, list, tuple)
PLAIN_TYPES = (str, int, float, bool, type(None))


def save_network(directory: str | os.PathLike, net, meta: dict, source: Path | None) -> Path:
    """Write a trained network's ``model.pt`` into ``directory``: a copy of the file it was loaded
    from (``source``, its folder), else its weights and ``meta``."""
    import shutil

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if source is not None and (source / "model.pt").is_file():
        shutil.copy2(source / "model.pt", directory / "model.pt")
    else:
        save_model(directory / "model.pt", net, meta)
    return directory


def check_plain(value, where: str = "the state") -> None:
    """Raise ``TypeError`` naming the first part of ``value`` that is not a tensor or a plain
    value (dict, list, tuple, str, int, float, bool, None; exact types: a numpy scalar, an array,
    a ``Path`` or any other object is refused, as ``torch.load(weights_only=True)`` would refuse
    it). A programming error of whoever builds the state, never the user's.

    Examples:
        ``check_plain({"lr": 0.1, "betas": (0.9, 0.99), "w": torch.zeros(2)})`` passes;
        ``check_plain({"mean": np.float64(1.0)}, "meta")`` raises ``TypeError: meta['mean'] is a
        numpy.float64; ...``.
    """
    import collections

    import torch

    kind = type(value)
    if kind in PLAIN_TYPES or kind is torch.Tensor:
        return
    if kind in (dict, collections.OrderedDict):
        for k, v in value.items():
            if type(k) not in PLAIN_TYPES:
                raise TypeError(
                    f"{where} has a key of type {type(k).__module__}.{type(k).__qualname__}; a saved "
                    "model or training state holds only tensors and plain values."
                )
            check_plain(v, f"{where}[{k!r}]")
        return
    if kind in (list, tuple):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {kind.__module__}.{kind.__qualname__}; a saved model or training state holds only "
        "tensors and plain values (dict, list, tuple, str, int, float, bool, None): convert it (a numpy "
        "scalar with float(), an array with .tolist() or torch.from_numpy, a path with str())."
    )


def save_state(path: str | os.PathLike, state: dict) -> None:
    """Write a dict of tensors and plain values (a model or a resumable training state) with the
    format version, atomically (a killed run never leaves a torn file); anything else in
    ``state`` is refused (``TypeError``, :func:`check_plain`) before the file is touched."""
    import torch

    from mrharmony import FORMAT_VERSION
    from mrharmony.io import atomic_path

    state = {"format_version": FORMAT_VERSION, **state}
    check_plain(state, "the saved state")
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _from_format_1(obj: dict) -> dict:
    """Version 1 -> 2: the same layout. What version 2 adds, only tensors and plain values, a
    version-1 file has shown by opening under ``weights_only=True``."""
    return obj


#: format version -> the function that turns a file's contents of that version into those of the next
MIGRATIONS = {1: _from_format_1}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The contents of a saved model or training state of any format version, migrated to the
    current one (see the module docstring); opening it runs no code from it.

    A missing file, a folder, a truncated or corrupt file, a bare pickle, a file holding anything
    but tensors and plain values, and a file of an unknown or newer format version are each
    refused with one sentence naming the file (:class:`~mrharmony.errors.InputError`).
    """
    import pickle
    import zipfile

    import torch

    from mrharmony import FORMAT_VERSION
    from mrharmony.io import check_format_version

    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder, not a mrharmony model or checkpoint file.", path)
    if not path.is_file():
        raise InputError("is missing.", path)
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; older pickles are never unpickled
        with open(path, "rb") as f:
            pickled = f.read(1) == b"\x80"  # the PROTO opcode that starts every binary pickle
        if pickled:
            raise InputError(
                "is a bare pickle, not a model or checkpoint that mrharmony saved (opening a pickle "
                "could run code); mrharmony does not open it.",
                path,
            )
        raise InputError(
            "could not be read as a mrharmony model or checkpoint (truncated or corrupt: it is not the "
            "zip archive that torch.save writes).",
            path,
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's restricted unpickler met something it does not build
        raise InputError(
            f"holds objects other than tensors and plain values{_unsafe_names(path)}, so opening it "
            "could run code; mrharmony does not open it (use a model trained with mrharmony).",
            path,
        ) from None
    except Exception as exc:  # noqa: BLE001 (any other failure to read an outside file is the file's)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"could not be read as a mrharmony model or checkpoint (truncated or corrupt: {reason}).", path
        ) from None
    if not isinstance(obj, dict) or "format_version" not in obj:
        raise InputError("is not a mrharmony model or checkpoint.", path)
    version = obj["format_version"]
    check_format_version(version, path)
    if version not in MIGRATIONS and version != FORMAT_VERSION:
        raise InputError(
            f"has format version {version}, which no mrharmony wrote; it was not written by mrharmony, or is damaged.",
            path,
        )
    while version < FORMAT_VERSION:
        obj = {**MIGRATIONS[version](obj), "format_version": version + 1}
        version += 1
    return obj


def _unsafe_names(path: Path) -> str:
    """`` (module.name, ...)``: the globals of a zip checkpoint that torch would not build, read
    without unpickling; empty where torch cannot tell (older torch, an unreadable pickle)."""
    import torch

    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 (torch < 2.5 has no such function; a pickle its scanner cannot follow)
        return ""
    return f" ({', '.join(names)})" if names else ""


def load_weights(net, obj: dict, path: str | os.PathLike) -> None:
    """Put a saved model's weights into the network rebuilt from its metadata."""
    try:
        net.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise InputError(
            f"holds weights that do not fit its own description ({str(exc).splitlines()[0]}).", path
        ) from None


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
        raise InputError(
            f"is a {found or 'non-' + name} model, not {'an' if name[0] in 'AEIOU' else 'a'} {name} "
            f"model (train one with 'mrharmony {command}').",
            path,
        )
    return obj, meta, path
