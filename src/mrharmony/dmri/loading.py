"""Opening any saved dMRI harmonizer: a network's ``model.pt`` (or its run directory) or a
statistical method's folder (``harmonizer.json`` and its maps)."""

from __future__ import annotations

import os
from pathlib import Path

from mrharmony.dmri.harmonizer import Harmonizer
from mrharmony.errors import InputError


def load_harmonizer(path: str | os.PathLike) -> Harmonizer:
    """Load any saved dMRI harmonizer.

    Parameters
    ----------
    path
        A network's run directory or its ``model.pt``, or a statistical method's folder
        (``harmonizer.json`` and its maps).

    Returns
    -------
    Harmonizer
        The harmonizer of the method the file names.

    Raises
    ------
    InputError
        A path that does not exist, a run that has not finished, a ``harmonizer.json`` that is not
        valid JSON, of a newer format or of an unknown method, or a folder that is no saved model:
        one sentence naming the file.

    Examples
    --------
    >>> h = load_harmonizer("runs/diqt")                                   # doctest: +SKIP
    >>> h.targets                                                          # doctest: +SKIP
    """
    from mrharmony.dmri.deep import DeepHarmonizer

    path = Path(path)
    if not path.exists():
        raise InputError("does not exist.", path)
    if (path / "model.pt").is_file() or path.suffix == ".pt":
        from mrharmony.dmri.stylecode import METHOD, StyleCodeHarmonizer
        from mrharmony.engine.checkpoint import model_file, read_checkpoint

        if read_checkpoint(model_file(path)).get("meta", {}).get("model", {}).get("method") == METHOD:
            return StyleCodeHarmonizer.load(path)
        return DeepHarmonizer.load(path)
    if (path / "harmonizer.json").is_file():
        import json

        from mrharmony.dmri.registry import REGISTRY
        from mrharmony.io import check_format_version

        try:
            d = json.loads((path / "harmonizer.json").read_text())
        except ValueError:
            raise InputError("is not valid JSON.", path / "harmonizer.json") from None
        check_format_version(d.get("format_version", 0), path / "harmonizer.json")  # the first ones had none
        found = [m for m in REGISTRY.methods("statistical") if m.name == d.get("method")]
        if not found:
            raise InputError(f"names an unknown method {d.get('method')!r}.", path / "harmonizer.json")
        return found[0].config.harmonizer().load(path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        raise InputError(
            "is a run that has not finished (no model.pt); resume it with 'mrharmony dmri train --resume'.", path
        )
    raise InputError("is not a saved mrharmony model (no model.pt).", path)


def learned_from_study(h: Harmonizer) -> bool:
    """Whether a harmonizer learned from a multi-site study's sites (no traveling heads): a study fit
    (RISH, ComBat) or ``stylecode``."""
    meta = getattr(h, "meta", None) or {}
    return h.method == "stylecode" or bool((meta.get("data") or {}).get("study"))
