"""Applying a trained IHF-Harmony flow to whole volumes (numpy in, numpy out), and undoing it.

Images are divided by their brain's 99th percentile on the way in and multiplied by the target's
on the way out (both flows). A 2D flow runs slice by slice, a 3D flow on the whole volume. At
apply time, sizes that the squeeze variant cannot halve are padded by reflection to a multiple of
``2 ** levels``, the normalizations' statistics leave the padding out (at a squeezed level, every
position that holds padding), and the flow's values on the padding are kept with the result
(:func:`harmonize_flow`), so that the inverse (:func:`restore_flow`) is exact at any size. The
paper's hierarchy flow takes any size and is not restored.
"""

from __future__ import annotations

import numpy as np
import torch

from mrharmony.structural.base import brain_scale
from mrharmony.structural.ihf.paper_flow import HierarchyFlow
from mrharmony.structural.ihf.residual_flow import ResidualIHF
from mrharmony.structural.ihf.squeeze_flow import SqueezeIHF

#: a flow with its style encoder, as a trained model holds it
Flow = SqueezeIHF | HierarchyFlow | ResidualIHF


def _layout(volume: np.ndarray, dims: int) -> np.ndarray:
    """(X, Y, Z) -> the networks' layout: slices (Z, 1, X, Y) in 2D, (1, 1, X, Y, Z) in 3D."""
    v = np.asarray(volume, np.float32)
    return np.ascontiguousarray(np.moveaxis(v, 2, 0)[:, None] if dims == 2 else v[None, None])


def _volume(a: np.ndarray, dims: int) -> np.ndarray:
    """The inverse of :func:`_layout`."""
    return np.moveaxis(a[:, 0], 0, 2) if dims == 2 else a[0, 0]


def _run_flow(
    net: Flow,
    image_n: np.ndarray,
    code: torch.Tensor,
    *,
    inverse: bool,
    margin: np.ndarray | None = None,
    chunk: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """The flow (or its inverse) on a normalized volume, slice by slice (2D) or whole (3D):
    ``(result on the volume's grid, margin)``.

    The squeezes need sizes that are multiples of ``2 ** levels``; other sizes are padded at the
    end of each axis, by reflection, and the instance statistics of every normalization are those
    of the image's positions only. The flow's values on the padding (``margin``, flat, float32)
    are part of its output: the inverse needs them back (empty when nothing was padded)."""
    x = _layout(image_n, net.dims)
    shape = x.shape  # the image's, before any padding
    m = net.multiple
    pads = [(-n) % m for n in x.shape[2:]]
    inside = None
    if any(pads):
        inside = np.zeros(x.shape[:2] + tuple(n + p for n, p in zip(x.shape[2:], pads)), bool)
        inside[(slice(None), slice(None), *(slice(0, n) for n in x.shape[2:]))] = True
        if inverse:
            if margin is None or margin.size != (~inside).sum():
                raise ValueError(
                    f"restoring an image of shape {image_n.shape} needs the flow's {(~inside).sum()} "
                    "values on its padding"
                )
            full = np.zeros(inside.shape, np.float32)
            full[inside] = x.ravel()
            full[~inside] = margin
            x = full
        else:
            x = np.pad(x, [(0, 0), (0, 0)] + [(0, p) for p in pads], mode="reflect")
    fn = net.inverse if inverse else net.forward
    n = x.shape[0] if net.dims == 2 else 1
    step = chunk if net.dims == 2 else 1
    outs = []
    with torch.no_grad():
        for i in range(0, n, step):
            valid = None if inside is None else torch.from_numpy(inside[i : i + step].astype(np.float32))
            outs.append(fn(torch.from_numpy(x[i : i + step]), code, valid).numpy())
    out = np.concatenate(outs)
    if inside is None:
        return _volume(out, net.dims), np.zeros(0, np.float32)
    crop = out[inside].reshape(shape)
    return _volume(crop, net.dims), out[~inside].astype(np.float32)


def margin_size(net: Flow, shape: tuple[int, ...]) -> int:
    """How many values of the flow's output lie on the padding of an image of ``shape``."""
    m = net.multiple
    size = tuple(shape[:2]) if net.dims == 2 else tuple(shape)
    padded = tuple(n + (-n) % m for n in size)
    per = int(np.prod(padded) - np.prod(size))
    return per * (shape[2] if net.dims == 2 else 1)


def target_code(net: Flow, target: np.ndarray, target_mask: np.ndarray) -> torch.Tensor:
    """The style code (1, style_dim) of a target image (normalized), over its whole brain."""
    with torch.no_grad():
        t = torch.from_numpy(_layout(target, net.dims))
        m = torch.from_numpy(_layout(target_mask.astype(np.float32), net.dims))
        return net.style_code(t, m, pool_batch=net.dims == 2)


def harmonize_flow(
    net: Flow, image: np.ndarray, mask: np.ndarray, target: np.ndarray, target_mask: np.ndarray
) -> tuple[np.ndarray, dict]:
    """``image`` with the appearance of ``target`` (float32, the target's intensity scale), and
    the record with which :func:`restore_flow` gives the input back without the target image:
    ``InputScale`` and ``TargetScale`` (the brains' 99th percentiles), ``StyleCode`` and
    ``FlowMargin`` (the flow's values on the padding of a size the squeezes cannot halve; empty
    otherwise). The output is the flow's as it is (not clipped), so that it stays invertible."""
    net = net.eval()
    s_in, s_t = brain_scale(image, mask), brain_scale(target, target_mask)
    code = target_code(net, target / s_t, target_mask)
    out, margin = _run_flow(net, image / s_in, code, inverse=False)
    record = {"InputScale": s_in, "TargetScale": s_t, "StyleCode": [float(v) for v in code[0]], "FlowMargin": margin}
    return (out * s_t).astype(np.float32), record


def restore_flow(net: Flow, harmonized: np.ndarray, record: dict) -> np.ndarray:
    """The inverse of :func:`harmonize_flow`: the input image back from its harmonized image and
    the record :func:`harmonize_flow` gave with it."""
    net = net.eval()
    code = torch.tensor([record["StyleCode"]], dtype=torch.float32)
    margin = record.get("FlowMargin")
    back, _ = _run_flow(
        net,
        harmonized / record["TargetScale"],
        code,
        inverse=True,
        margin=None if margin is None else np.asarray(margin, np.float32),
    )
    return (back * record["InputScale"]).astype(np.float32)
