"""The whole dMRI run config: the shared sections (:mod:`mrharmony.dmri.config`) and a ``model``
section that is the config model of one of the registry's methods (:mod:`mrharmony.dmri.registry`);
a key of another method's model is refused naming the method.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter, field_validator

from mrharmony.config import StrictModel, model_from_dict, read_run_yaml, resolve_paths
from mrharmony.dmri.config import PRESETS, DataConfig, TrainingConfig
from mrharmony.dmri.registry import REGISTRY

_MODELS = REGISTRY.config_models()
#: the ``model`` section: the config model of one of the registry's dMRI methods
ModelConfig = Annotated[Union[tuple(_MODELS)], Field(discriminator="method")]
_MODEL_ADAPTER = TypeAdapter(ModelConfig)
_KEYS = {m.model_fields["method"].annotation.__args__[0]: set(m.model_fields) for m in _MODELS}


def model_config(section: dict):
    """Validate a ``model`` section (as a saved model records it) into its method's config model."""
    return _MODEL_ADAPTER.validate_python(section)


class RunConfig(StrictModel):
    preset: Literal["paper", "demo", "test"] | None = None
    label: str | None = Field(default=None, min_length=1,
                              description="the run's row in evaluation tables (default: its method), e.g. a "
                                          "variant such as diqt_continued")
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _keys_of_the_method(cls, v):
        if isinstance(v, dict) and isinstance(v.get("method"), str) and v["method"] not in _KEYS:
            raise ValueError(f"{v['method']!r} is not a dMRI method (those are {', '.join(_KEYS)}; a structural "
                             "method trains with 'mrharmony structural train')")
        if isinstance(v, dict) and v.get("method") in _KEYS:
            own = _KEYS[v["method"]]
            for key in v:
                if key not in own and any(key in keys for keys in _KEYS.values()):
                    raise ValueError(f"'{key}' does not apply to method {v['method']}")
        return v


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read a run config; the preset fills the training keys the file does not set, and relative
    paths (the settings typed as paths: the dataset, runs a method starts from) are taken from the
    config's folder."""
    raw = read_run_yaml(path, PRESETS)
    base = Path(path).resolve().parent
    data, model = raw.get("data"), raw.get("model")
    if isinstance(data, dict):
        raw["data"] = resolve_paths(data, DataConfig, base)
    if isinstance(model, dict) and model.get("method") in _KEYS:
        raw["model"] = resolve_paths(model, REGISTRY.get(model["method"]).config, base)
    return model_from_dict(RunConfig, raw, source=path)
