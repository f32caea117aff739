"""Validated configuration: YAML in, typed objects out.

Every config in mrharmony is a :class:`StrictModel` (a pydantic model that refuses unknown
keys), read with :func:`load_yaml_model`, which turns any problem into one sentence naming the
file, the key and what is wrong.

A setting that is a path (or a list or mapping of paths) is marked in its model as
``Field(..., json_schema_extra={"path": True})``: :func:`resolve_paths` takes such values from the
folder of the config file that gives them, and :func:`relative_paths` records them relative to a
run directory (:func:`relative_path`), so that a folder holding both the data and the runs can be
moved or copied as a whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mrharmony.errors import InputError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config object: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def read_yaml(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError("does not exist." if not path.exists() else "is not a file.", path)
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"is not valid YAML{where}.", path) from None
    except UnicodeDecodeError:
        raise InputError("is not a text file.", path) from None


def read_run_yaml(path: str | os.PathLike, presets: dict[str, dict]) -> dict:
    """A run config file as a mapping, its ``preset`` (one of ``presets``) filling the keys of the
    ``training`` section that the file does not set."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError("must hold a mapping of keys to values at the top level.", path)
    raw = dict(raw)
    preset = raw.get("preset")
    if preset is not None and preset not in presets:
        raise InputError(f"invalid value for 'preset': {preset!r} is not one of {', '.join(presets)}.", path)
    if preset is not None:
        training = raw.get("training") or {}
        if not isinstance(training, dict):
            raise InputError("invalid value for 'training': a mapping is needed.", path)
        raw["training"] = {**presets[preset], **training}
    return raw


def file_location(loc: tuple, data: Any) -> list:
    """A pydantic error location as the file's keys: the member name that a section chosen by one
    of its keys (a ``model`` section by its ``method``) adds to the location is left out."""
    out, cur = [], data
    for part in loc:
        if isinstance(cur, dict) and isinstance(part, str) and part not in cur and part in cur.values():
            continue
        out.append(part)
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return out


def describe_validation_error(exc: ValidationError, data: Any = None) -> str:
    """One sentence for the first problem pydantic found (the one the user must fix first);
    ``data``: what was validated, to name its keys as the file does."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in file_location(err["loc"], data)) or "the top level"
    if err["type"] == "extra_forbidden":
        text = f"unknown key '{loc}'"
    elif err["type"] == "missing":
        text = f"missing required key '{loc}'"
    elif err["type"] == "union_tag_not_found":  # a section chosen by one key that is not there
        key = str(err.get("ctx", {}).get("discriminator", "")).strip("'")
        text = f"missing required key '{loc}.{key}'"
    elif err["type"] == "union_tag_invalid":  # a section whose kind is chosen by one key (the method)
        ctx = err.get("ctx", {})
        key = str(ctx.get("discriminator", "")).strip("'")
        text = (
            f"invalid value for '{loc}.{key}': {ctx.get('tag')!r} is not one of "
            f"{str(ctx.get('expected_tags', '')).replace(chr(39), '')}"
        )
    else:
        if err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # a validator's own words, as it wrote them
        else:
            msg = err["msg"]
            msg = msg[0].lower() + msg[1:] if msg else msg
        text = f"invalid value for '{loc}': {msg}"
    extra = len(exc.errors()) - 1
    if extra:
        text += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return text + "."


def model_from_dict(model: type[M], data: Any, *, source: str | os.PathLike | None = None) -> M:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("must hold a mapping of keys to values at the top level.", source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc, data), source) from None


def load_yaml_model(model: type[M], path: str | os.PathLike) -> M:
    """Read ``path`` as YAML and validate it as ``model``; errors name the file and the key."""
    return model_from_dict(model, read_yaml(path), source=path)


def path_fields(model: type[BaseModel]) -> list[str]:
    """The settings of ``model`` marked as paths (``json_schema_extra={"path": True}``)."""
    return [
        name
        for name, f in model.model_fields.items()
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("path")
    ]


def map_paths(section: dict, names, fn) -> dict:
    """``section`` with ``fn`` applied to each string of the values of ``names`` (a string, a list
    of strings or a mapping to strings); other values, and names it lacks, are left as they are."""
    out = dict(section)
    for name in names:
        v = out.get(name)
        if isinstance(v, str):
            out[name] = fn(v)
        elif isinstance(v, list):
            out[name] = [fn(x) if isinstance(x, str) else x for x in v]
        elif isinstance(v, dict):
            out[name] = {k: fn(x) if isinstance(x, str) else x for k, x in v.items()}
    return out


def resolve_paths(section: dict, model: type[BaseModel], base: Path) -> dict:
    """``section`` (a config section as read, to be validated as ``model``) with the values of its
    path settings made absolute from the folder ``base`` (that of the config file)."""
    base = Path(base)
    return map_paths(section, path_fields(model), lambda v: str((base / v).resolve()))


def relative_path(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """``path`` relative to the run directory, as runs record their data (so that a folder holding
    both the data and the runs can be moved or copied as a whole)."""
    return os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())


def relative_paths(section: dict, model: type[BaseModel], run_dir: Path) -> dict:
    """The inverse of :func:`resolve_paths` for recording: ``section`` (a dumped ``model``) with
    the values of its path settings relative to the run directory ``run_dir``, where the run's
    ``config.yaml`` is written."""
    return map_paths(section, path_fields(model), lambda v: relative_path(v, run_dir))


def dump_yaml(obj: BaseModel | dict) -> str:
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return yaml.safe_dump(data, sort_keys=False)
