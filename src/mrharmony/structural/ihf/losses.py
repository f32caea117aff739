"""IHF-Harmony's phase-2 losses, one set per flow: :func:`squeeze_losses` for the squeeze
variant, :func:`hierarchy_losses` for the paper's hierarchy flow, both built from the anatomy
term :func:`self_similarity_loss` and the artefact term
:func:`~mrharmony.structural.blocks.style_loss` on the trainee's fixed features."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mrharmony.structural.blocks import style_loss
from mrharmony.structural.ihf.trainee import IHFTrainee

#: how many evenly spread positions the squeeze variant's anatomy term compares per feature level
SIMILARITY_POSITIONS = 256


def self_similarity_loss(fo: torch.Tensor, fs: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
    """Anatomy consistency: L1 between the cosine self-similarity matrices of the output's and the
    source's features at the flattened positions ``idx`` (the same positions in both; default
    every position, as the paper's code measures it)."""
    a, b = fo.flatten(2), fs.flatten(2)
    if idx is not None:
        a, b = a[..., idx], b[..., idx]
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return (a.transpose(1, 2) @ a - b.transpose(1, 2) @ b).abs().mean()


def _flow_features(net: IHFTrainee, batch: dict) -> tuple:
    """Phase 2's features: the output's (with gradients), the input's and the target's; and the masks."""
    x, mx, t, mt = (batch[k] for k in ("x", "mx", "t", "mt"))
    out = net.ihf(x, net.ihf.style_code(t, mt))
    fo = net.feature_maps(out)
    with torch.no_grad():
        fx, ft = net.feature_maps(x), net.feature_maps(t)
    return fo, fx, ft, mx, mt


def squeeze_losses(
    net: IHFTrainee, batch: dict, *, anatomy_weight: float, artefact_weight: float, artefact_levels: int | None = None
) -> dict:
    """Phase 2 of the squeeze variant: anatomy consistency (self-similarity of every feature
    level, output against input, at fixed evenly spread positions) and artefact consistency
    (channel means and stds of the ``artefact_levels`` deepest feature levels, all by default,
    output against target, inside the brain masks)."""
    fo, fx, ft, mx, mt = _flow_features(net, batch)
    anatomy = fo[0].new_zeros(())
    for a, b in zip(fo, fx):
        n = a[0, 0].numel()
        idx = torch.linspace(0, n - 1, min(n, SIMILARITY_POSITIONS), device=a.device).long()
        anatomy = anatomy + self_similarity_loss(a, b, idx)
    k = len(fo) - (artefact_levels or len(fo))
    artefact = style_loss(fo[k:], ft[k:], mx, mt)
    return {"loss": anatomy_weight * anatomy + artefact_weight * artefact, "anatomy": anatomy, "artefact": artefact}


def hierarchy_losses(net: IHFTrainee, batch: dict, *, anatomy_weight: float, artefact_weight: float) -> dict:
    """Phase 2 of the paper's flow, as its code weighs them: anatomy consistency, the dense
    self-similarity of the deepest features (output against input, every position), and artefact
    consistency, the channel means and stds of the shallower levels (output against target,
    inside the brain masks, the 90% of channels whose means differ least)."""
    fo, fx, ft, mx, mt = _flow_features(net, batch)
    anatomy = self_similarity_loss(fo[-1], fx[-1])
    artefact = style_loss(fo[:-1], ft[:-1], mx, mt, keep=0.9)
    return {"loss": anatomy_weight * anatomy + artefact_weight * artefact, "anatomy": anatomy, "artefact": artefact}
