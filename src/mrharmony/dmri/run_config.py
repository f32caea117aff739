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

_MODELS = REGISTRY.config_models(("network", "statistical"))
#: the ``model`` section: the config model of one of the registry's dMRI methods that learn from
#: traveling heads (``unpaired`` methods learn from a study's sites: :mod:`mrharmony.dmri.stylecode`)
ModelConfig = Annotated[Union[tuple(_MODELS)], Field(discriminator="method")]  # noqa: UP007 (a union built at run time)
_MODEL_ADAPTER = TypeAdapter(ModelConfig)
_KEYS = {m.model_fields["method"].annotation.__args__[0]: set(m.model_fields) for m in _MODELS}


def model_config(section: dict):
    """Validate a ``model`` section into its method's config model.

    Parameters
    ----------
    section
        A ``model`` section as a saved model records it (``method`` and the method's settings).

    Returns
    -------
    StrictModel
        The config model of the method the section names.

    Raises
    ------
    pydantic.ValidationError
        An unknown method or setting, or a wrong value.
    """
    return _MODEL_ADAPTER.validate_python(section)


class RunConfig(StrictModel):
    """A whole dMRI run config, as ``mrharmony dmri train CONFIG`` reads it (:func:`load_run_config`).

    Attributes
    ----------
    preset : {'paper', 'demo', 'test'}, optional
        The defaults of the training section (:data:`mrharmony.dmri.config.PRESETS`).
    label : str, optional
        The run's row in evaluation tables (default: its method), e.g. a variant such as
        ``diqt_continued``.
    data : mrharmony.dmri.config.DataConfig
        The dataset, targets, patches and split.
    model : ModelConfig
        The config model of one of the registry's methods, chosen by its ``method``; a key of
        another method's model is refused naming the method.
    training : mrharmony.dmri.config.TrainingConfig
        The training settings.
    """

    preset: Literal["paper", "demo", "test"] | None = None
    label: str | None = Field(
        default=None,
        min_length=1,
        description="the run's row in evaluation tables (default: its method), e.g. a variant such as diqt_continued",
    )
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _keys_of_the_method(cls, v):
        if isinstance(v, dict) and isinstance(v.get("method"), str) and v["method"] not in _KEYS:
            raise ValueError(
                f"{v['method']!r} is not a dMRI method (those are {', '.join(_KEYS)}; a structural "
                "method trains with 'mrharmony structural train')"
            )
        if isinstance(v, dict) and v.get("method") in _KEYS:
            own = _KEYS[v["method"]]
            for key in v:
                if key not in own and any(key in keys for keys in _KEYS.values()):
                    raise ValueError(f"'{key}' does not apply to method {v['method']}")
        return v


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read a dMRI run config file.

    The preset fills the training keys the file does not set, and relative paths (the settings
    typed as paths: the dataset, runs a method starts from) are taken from the config's folder.

    Parameters
    ----------
    path
        The YAML file.

    Returns
    -------
    RunConfig

    Raises
    ------
    InputError
        A file that cannot be read or is not a valid run config: one sentence naming the file
        and the key.

    Examples
    --------
    >>> cfg = load_run_config("examples/diqt_tuned-prisma_st.yaml")       # doctest: +SKIP
    >>> cfg.model.method, cfg.training.epochs                              # doctest: +SKIP
    """
    raw = read_run_yaml(path, PRESETS)
    base = Path(path).resolve().parent
    data, model = raw.get("data"), raw.get("model")
    if isinstance(data, dict):
        raw["data"] = resolve_paths(data, DataConfig, base)
    if isinstance(model, dict) and model.get("method") in _KEYS:
        raw["model"] = resolve_paths(model, REGISTRY.get(model["method"]).config, base)
    return model_from_dict(RunConfig, raw, source=path)
