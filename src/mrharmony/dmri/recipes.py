"""Named training recipes of the dMRI networks: how this project trains a method, under one name.

A recipe is a model section and the training options that depart from a run config's defaults
(each a named option of :class:`~mrharmony.dmri.config.TrainingConfig`), with the number of
optimizer steps as a multiple of a schedule's epochs. The benchmarks train their rows from these
recipes, and the example configs that spell one out (``examples/diqt_tuned-*.yaml``) say which
recipe they are, so that a user, an example and a benchmark train the same thing.

Examples
--------
>>> from mrharmony.dmri.recipes import recipe
>>> tuned = recipe("diqt_tuned")
>>> tuned.training(epochs=4)["epochs"]
16
>>> cfg = tuned.run_config(preset="demo", data={"dataset": "../data", "targets": ["prisma_st"]})
>>> cfg["label"], cfg["model"]
('diqt_tuned', {'method': 'diqt'})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """One named training recipe.

    Parameters
    ----------
    name : str
        The recipe's name, also the label of the rows trained with it.
    summary : str
        One sentence: what the recipe changes from the paper's.
    model : Mapping
        The run config's ``model`` section.
    options : Mapping
        Training options beside the schedule (``augment``, ``loss_weighting``, ...).
    steps : int
        The optimizer steps as a multiple of the schedule's: ``epochs`` times ``steps``.
    stretch_decay : bool
        Whether the step decay is stretched to the longer run as well (``lr_decay_every`` times
        ``steps``), as for a compute-matched rival trained with the paper's schedule.
    """

    name: str
    summary: str
    model: Mapping[str, Any] = field(default_factory=lambda: {"method": "diqt"})
    options: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 1
    stretch_decay: bool = False

    def training(self, *, epochs: int, lr_decay_every: int | None = None) -> dict:
        """The run config's ``training`` section for a schedule of ``epochs`` epochs.

        Parameters
        ----------
        epochs : int
            The schedule's epochs (a preset's or a benchmark budget's); the recipe trains
            ``steps`` times as many.
        lr_decay_every : int, optional
            The schedule's step decay, needed by a recipe that stretches it.

        Returns
        -------
        dict
            ``epochs`` first, then the stretched decay (where the recipe stretches it), then the
            recipe's options.
        """
        section: dict[str, Any] = {"epochs": self.steps * epochs}
        if self.stretch_decay:
            if lr_decay_every is None:
                raise ValueError(f"recipe {self.name} stretches the step decay: give lr_decay_every.")
            section["lr_decay_every"] = self.steps * lr_decay_every
        return {**section, **self.options}

    def run_config(
        self, *, preset: str, data: Mapping[str, Any], epochs: int | None = None, label: str | None = None
    ) -> dict:
        """A whole run config (``mrharmony dmri train``) of this recipe.

        Parameters
        ----------
        preset : str
            The training preset (:data:`mrharmony.dmri.config.PRESETS`); its epochs are the
            schedule's unless ``epochs`` is given.
        data : Mapping
            The ``data`` section (dataset, targets, split).
        epochs : int, optional
            The schedule's epochs, before the recipe's multiple.
        label : str, optional
            The rows' label; the recipe's name by default.

        Returns
        -------
        dict
            ``preset``, ``label``, ``data``, ``model`` and ``training``, in that order.
        """
        from mrharmony.dmri.config import PRESETS, TrainingConfig

        def schedule(key: str):
            return PRESETS[preset].get(key, TrainingConfig.model_fields[key].default)

        training = self.training(
            epochs=schedule("epochs") if epochs is None else epochs,
            lr_decay_every=schedule("lr_decay_every") if self.stretch_decay else None,
        )
        return {
            "preset": preset,
            "label": label or self.name,
            "data": dict(data),
            "model": dict(self.model),
            "training": training,
        }


#: the departures of ``diqt_tuned`` from the paper's recipe, each a named option
_TUNED_OPTIONS = {
    "augment": "flips",
    "loss_weighting": "order",
    "inputs": "sh+position",
    "lr_schedule": "cosine",
    "warmup_epochs": 1,
}
#: ``diqt_tuned``'s multiple of the schedule's optimizer steps
_TUNED_STEPS = 4

#: The named recipes, by name.
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "diqt_tuned",
            "DIQT with mirrored samples (augment flips), every SH order weighing the same in the loss "
            "(loss_weighting order), the position channels (inputs sh+position), a warm-up and cosine decay, "
            "and four times the schedule's optimizer steps",
            options=_TUNED_OPTIONS,
            steps=_TUNED_STEPS,
        ),
        Recipe(
            "diqt_tuned_sh",
            "diqt_tuned without the position channels: the SH features alone, as MSP's first stage takes them",
            options={k: v for k, v in _TUNED_OPTIONS.items() if k != "inputs"},
            steps=_TUNED_STEPS,
        ),
        Recipe(
            "diqt_long",
            "DIQT with the paper's recipe for as many optimizer steps as diqt_tuned, its step decay stretched "
            "to them: diqt_tuned's compute-matched rival",
            steps=_TUNED_STEPS,
            stretch_decay=True,
        ),
    )
}


def recipe(name: str) -> Recipe:
    """The recipe named ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`RECIPES`.

    Returns
    -------
    Recipe

    Raises
    ------
    KeyError
        For a name that is no recipe, naming the recipes there are.
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"no recipe {name!r}; the recipes are {', '.join(RECIPES)}.") from None
