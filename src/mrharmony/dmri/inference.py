"""Whole-volume inference of the deep harmonizers: fully convolutional and tiled.

Every network of mrharmony uses valid convolutions, so the output voxel at input voxel c
depends only on the input within ``shrink`` voxels of c (``shrink = (patch - output) / 2``,
counted in input voxels). Running the network on a large tile therefore gives, for every voxel
of the tile's core, exactly what patch-by-patch inference gives for that voxel: the volume is
zero-padded by the largest shrink of the targets (as the patch sampler pads), cut into
overlapping tiles whose cores tile the volume, and the cores are stitched. Memory depends on
the tile size, not on the volume.

:func:`predict_patchwise` is the slow reference (one patch per voxel, its centre kept), used by
the tests and the benchmark to check the tiled result.
"""

from __future__ import annotations

import numpy as np


def shrinks(output_sizes: dict[str, int], ratios: dict[str, int], patch: int) -> dict[str, int]:
    """Input voxels lost on each side by each target's final output."""
    out = {}
    for t, size in output_sizes.items():
        r = ratios[t]
        if size % r or (patch - size // r) % 2:
            raise ValueError(f"output of {size} voxels for target {t!r} is not centred on the patch")
        out[t] = (patch - size // r) // 2
    return out


def _final(outputs: dict, output: int = -1) -> dict:
    return {t: outs[output] for t, outs in outputs.items()}


def predict_volume(
    net,
    volume: np.ndarray,
    *,
    output_sizes: dict[str, int],
    ratios: dict[str, int],
    patch: int,
    tile: int = 48,
    device: str = "cpu",
    bf16: bool = False,
    output: int = -1,
    region: np.ndarray | None = None,
    out_channels: int | None = None,
) -> dict[str, np.ndarray]:
    """Final predictions of every target for a whole volume (``output``: which of each target's
    outputs, by default the final one; ``output_sizes`` are that output's).

    Args:
        net: a trained network (``forward(x) -> {target: [outputs]}``).
        volume: normalized input features (X, Y, Z, C).
        output_sizes: each target's final output size (target voxels) for a ``patch`` input.
        ratios: target voxels per input voxel.
        tile: input tile edge in voxels, margins included (memory grows with its cube).
        out_channels: channels of the predictions (default: the volume's).
        region: input voxels (X, Y, Z) where predictions are needed; tiles whose core holds none
            of them are skipped (their output stays 0). Default: every voxel.

    Returns:
        ``{target: (r X, r Y, r Z, C) float32}``, on the target's grid aligned with the input's.
    """
    import contextlib

    import torch

    sh = shrinks(output_sizes, ratios, patch)
    m = max(sh.values())
    if tile <= 2 * m:
        raise ValueError(f"tile of {tile} voxels is too small for a margin of {m}")
    dev = torch.device(device)
    net = net.to(dev, memory_format=torch.channels_last_3d).eval()
    vol = np.pad(np.asarray(volume, np.float32), ((m, m), (m, m), (m, m), (0, 0)))
    shape = volume.shape[:3]
    if region is not None:
        region = np.asarray(region, bool)
        if region.shape != tuple(shape):
            raise ValueError(f"region of shape {region.shape} for a volume of shape {tuple(shape)}")
    c = volume.shape[3] if out_channels is None else out_channels
    out = {t: np.zeros((*(n * r for n in shape), c), np.float32) for t, r in ratios.items() if t in output_sizes}
    core = tile - 2 * m
    starts = [range(0, n, core) for n in shape]
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    with torch.no_grad():
        for i in starts[0]:
            for j in starts[1]:
                for k in starts[2]:
                    n = [min(core, shape[a] - s) for a, s in enumerate((i, j, k))]
                    if region is not None and not region[i : i + n[0], j : j + n[1], k : k + n[2]].any():
                        continue
                    block = vol[i : i + n[0] + 2 * m, j : j + n[1] + 2 * m, k : k + n[2] + 2 * m]
                    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(block, -1, 0))[None]).to(dev)
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                    with autocast():
                        preds = _final(net(x), output)
                    for t, y in preds.items():
                        r, e = ratios[t], m - sh[t]  # e: extra margin this target still has
                        y = y[0].float()
                        y = y[:, e * r : y.shape[1] - e * r, e * r : y.shape[2] - e * r, e * r : y.shape[3] - e * r]
                        out[t][i * r : (i + n[0]) * r, j * r : (j + n[1]) * r, k * r : (k + n[2]) * r] = (
                            y.permute(1, 2, 3, 0).cpu().numpy()
                        )
    return out


def predict_patchwise(
    net,
    volume: np.ndarray,
    voxels: np.ndarray,
    *,
    output_sizes: dict[str, int],
    ratios: dict[str, int],
    patch: int,
    batch: int = 64,
) -> dict[str, np.ndarray]:
    """Reference inference: for each input voxel (N, 3), the patch centred on it, the output's centre.

    Returns ``{target: (N, r, r, r, C)}``: the r^3 target voxels inside each input voxel.
    """
    import torch

    sh = shrinks(output_sizes, ratios, patch)
    h = patch // 2
    vol = np.pad(np.asarray(volume, np.float32), ((h, h), (h, h), (h, h), (0, 0)))
    net = net.eval()
    res = {t: [] for t in output_sizes}
    with torch.no_grad():
        for s in range(0, len(voxels), batch):
            idx = voxels[s : s + batch]
            xs = np.stack([vol[a : a + patch, b : b + patch, d : d + patch] for a, b, d in idx])
            x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(xs, -1, 1)))
            for t, y in _final(net(x)).items():
                r = ratios[t]
                centre = (h - sh[t]) * r  # first target voxel of the centre input voxel
                y = y[:, :, centre : centre + r, centre : centre + r, centre : centre + r]
                res[t].append(y.permute(0, 2, 3, 4, 1).numpy())
    return {t: np.concatenate(v) for t, v in res.items()}
