"""The model card of a trained dMRI method (:mod:`mrharmony.engine.card`): what it learned from."""

from __future__ import annotations

from mrharmony.engine.card import make_card, protocol

INTENDED_USE = (
    "harmonizing diffusion MRI acquired with the input platform's protocol to the target platforms' "
    "(SH coefficients, the signal on the target's gradient table, FA and MD), so that group studies "
    "can pool them"
)


def training_card(
    cfg, ds, targets: list[str], fitted_on: list[str], held_out: list[str], *, variant: str, budget: dict | None
) -> dict:
    """The card of a dMRI run: ``cfg`` its run config, ``ds`` its dataset, the subjects whose
    scans it was fitted on and those held out of the fit."""
    platforms = [protocol(ds.input_platform)] + [protocol(p) for p in ds.target_platforms if p.name in targets]
    synthetic = bool(getattr(ds.spec, "generated_by", None))
    limits = [
        "learned from the traveling heads listed: scans of another protocol (shell b-value, voxel size) are "
        "refused by apply unless the mismatch is allowed and recorded",
        "a harmonized scan keeps what differs between people only as far as the training data let the "
        "method learn it; check group effects on a held-out cohort",
        "research use: not validated for clinical decisions",
    ]
    if synthetic:
        limits.insert(0, "trained on synthetic data (mrharmony simulate): a demonstration, not a model for real scans")
    if cfg.data.normalization == "scan":
        limits.append(
            "features normalized per scan (the paper's scheme): brain-wide differences between people are not kept"
        )
    return make_card(
        wing="dmri",
        method=cfg.model.method,
        variant=variant,
        training_data={
            "dataset": ds.spec.name,
            "synthetic": synthetic,
            "platforms": platforms,
            "subjects_fitted_on": list(fitted_on),
            "subjects_held_out": list(held_out),
            "normalization": cfg.data.normalization,
            "denoise": cfg.data.denoise,
        },
        budget=budget,
        seed=cfg.training.seed if budget is not None else None,
        intended_use=INTENDED_USE,
        limits="; ".join(limits),
    )
