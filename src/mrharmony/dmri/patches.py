"""Aligned input/target patches, cut lazily from volumes held once in memory.

Each voxel inside the input scan's brain mask is the centre of an input patch of ``size``^3
voxels (11^3 by default, as in the MSP paper). Its target patch covers the same physical region
on the target's grid: for a target whose voxels are r times finer (r = 2 for ``connectom_sa``),
that is (r * size)^3 target voxels, found from the affines, not assumed. A ``target_size``
smaller than ``r * size`` keeps the centred part (for networks with valid convolutions).

Volumes are stored once, zero-padded by half a patch, so cutting a patch is a slice: no array
of all patches is ever built. They are stored channels-last, so that each row of a patch is one
contiguous run of memory; patches are returned channel-first (C, p, p, p) as views of
channels-last buffers, which ``torch.from_numpy`` turns into ``channels_last_3d`` tensors
without a copy. The sampler is a sequence (``len``, ``[i]``) that a PyTorch ``DataLoader`` can
consume directly, and has a vectorized :meth:`PatchSampler.batch`.

Examples:
    >>> sampler = PatchSampler.from_dataset(ds, subjects=ds.subjects[:4])    # doctest: +SKIP
    >>> train, test = split_by_patch(len(sampler), test_fraction=0.1, seed=0) # doctest: +SKIP
    >>> x, ys = sampler.batch(train[:12])   # x: (12, 28, 11, 11, 11); ys["connectom_sa"]: (12, 28, 22, 22, 22)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrharmony.errors import InputError


@dataclass(frozen=True)
class TargetGeometry:
    """How a target grid relates to the input grid: ratio r and the whole-voxel offset."""

    ratio: int
    offset: np.ndarray  # (3,) target voxel index of the first voxel of input voxel 0, per axis
    full_size: int  # r * input patch size
    size: int  # the size actually cut (centred crop of full_size)

    @classmethod
    def from_affines(
        cls, input_affine: np.ndarray, target_affine: np.ndarray, size: int, target_size: int | None, name: str
    ) -> TargetGeometry:
        m = np.linalg.inv(target_affine) @ input_affine  # input voxel -> target voxel
        diag = np.diag(m[:3, :3])
        r = int(round(float(diag[0])))
        if r < 1 or not np.allclose(m[:3, :3], np.eye(3) * r, atol=1e-3):
            raise InputError(f"target {name!r} is not on a grid aligned with the input's (voxel ratio {diag}).")
        # input voxel c covers target voxels r*c + (r-1)/2 +- (r-1)/2; its first one is r*c + offset
        offset = m[:3, 3] - (r - 1) / 2.0
        if not np.allclose(offset, np.round(offset), atol=1e-2):
            raise InputError(f"target {name!r} is shifted from the input grid by a fraction of a voxel.")
        full = r * size
        ts = full if target_size is None else int(target_size)
        if ts > full or ts < 1 or (full - ts) % 2:
            raise InputError(
                f"target patch size {ts} for {name!r} must be at most {full} and differ from it by an even number."
            )
        return cls(ratio=r, offset=np.round(offset).astype(int), full_size=full, size=ts)


class PatchSampler:
    """Input and target patches of a set of co-registered subjects.

    Args:
        inputs: per subject, the input volume (X, Y, Z, C).
        input_affines: per subject, its affine.
        masks: per subject, the input brain mask (X, Y, Z); its voxels are the patch centres.
        targets: per target name, per subject, the target volume (X', Y', Z', C').
        target_affines: per target name, per subject, its affine.
        size: input patch size (odd).
        target_sizes: per target name, the size to cut (default ``r * size``).
        subjects: names of the subjects, for reporting and splits.
    """

    def __init__(
        self,
        inputs,
        input_affines,
        masks,
        targets: dict,
        target_affines: dict,
        *,
        size: int = 11,
        target_sizes: dict | None = None,
        subjects: list[str] | None = None,
    ):
        if size < 1 or size % 2 == 0:
            raise InputError(f"the patch size must be a positive odd number, got {size}.")
        self.size = size
        self.half = size // 2
        self.subjects = list(subjects) if subjects is not None else [f"subject{i}" for i in range(len(inputs))]
        self.target_names = list(targets)
        target_sizes = target_sizes or {}
        unknown = set(target_sizes) - set(self.target_names)
        if unknown:
            raise InputError(f"target patch size given for unknown target {sorted(unknown)[0]!r}.")
        h = self.half
        self._inputs = [np.pad(np.asarray(v, np.float32), ((h, h), (h, h), (h, h), (0, 0))) for v in inputs]
        self.in_channels = self._inputs[0].shape[-1]
        self.geometry: dict[str, list[TargetGeometry]] = {}
        self._targets: dict[str, list[np.ndarray]] = {}
        for name in self.target_names:
            geoms, vols = [], []
            for s, (vol, aff) in enumerate(zip(targets[name], target_affines[name])):
                g = TargetGeometry.from_affines(input_affines[s], aff, size, target_sizes.get(name), name)
                geoms.append(g)
                vols.append(self._canvas(np.asarray(vol, np.float32), g, inputs[s].shape[:3]))
            if len({(g.ratio, g.size) for g in geoms}) != 1:
                raise InputError(f"target {name!r} has different voxel ratios across subjects.")
            self.geometry[name] = geoms
            self._targets[name] = vols
        centres = []
        for s, m in enumerate(masks):
            m = np.asarray(m, bool)
            if m.shape != tuple(inputs[s].shape[:3]):
                raise InputError(f"mask of subject {self.subjects[s]} has shape {m.shape}, not {inputs[s].shape[:3]}.")
            idx = np.argwhere(m)
            centres.append(np.column_stack([np.full(len(idx), s), idx]))
        self.centres = np.concatenate(centres).astype(np.int32) if centres else np.zeros((0, 4), np.int32)

    def _canvas(self, vol: np.ndarray, g: TargetGeometry, in_shape) -> np.ndarray:
        """Target volume placed on a zero canvas aligned with the padded input grid.

        Canvas index ``r * (c + half)`` is the first target voxel of input voxel c (padded input
        index ``c + half``), so the full target patch of centre c starts at canvas ``r * c``.
        """
        r, h = g.ratio, self.half
        data = vol
        shape = tuple(r * (n + 2 * h) for n in in_shape)
        canvas = np.zeros((*shape, data.shape[-1]), np.float32)
        # target voxel t sits at canvas index t - offset + r*h
        src, dst = [], []
        for ax in range(3):
            start = int(-g.offset[ax] + r * h)
            lo = max(0, -start)
            hi = min(data.shape[ax], shape[ax] - start)
            src.append(slice(lo, max(lo, hi)))
            dst.append(slice(start + lo, start + max(lo, hi)))
        canvas[tuple(dst)] = data[tuple(src)]
        return canvas

    @classmethod
    def from_dataset(
        cls,
        ds,
        *,
        subjects: list[str] | None = None,
        targets: list[str] | None = None,
        size: int = 11,
        target_sizes: dict | None = None,
        normalized: bool = True,
        scaling=None,
        position: bool = False,
    ) -> PatchSampler:
        """Load the prepared SH features of ``subjects`` (default: all) of a dataset, normalized
        with ``scaling`` (:class:`~mrharmony.dmri.features.normalization.FeatureScaling`; default:
        each scan by its own statistics) unless not ``normalized``; with ``position``, the inputs
        carry the position channels (:mod:`mrharmony.dmri.features.position`)."""
        from mrharmony.dmri.features.position import with_position
        from mrharmony.dmri.features.prepare import load_features

        subjects = list(subjects or ds.subjects)
        targets = list(targets or [p.name for p in ds.target_platforms])
        inp = ds.input_platform.name
        inputs, in_aff, masks = [], [], []
        tvols = {t: [] for t in targets}
        taff = {t: [] for t in targets}
        for s in subjects:
            f = load_features(
                ds,
                s,
                inp,
                normalized=normalized,
                scaling=scaling,
                denoise=scaling.denoise_of(inp) if scaling is not None else "none",
            )
            inputs.append(with_position(f.data, f.mask, f.affine) if position else f.data)
            in_aff.append(f.affine)
            masks.append(f.mask)
            for t in targets:
                ft = load_features(ds, s, t, normalized=normalized, scaling=scaling)
                tvols[t].append(ft.data)
                taff[t].append(ft.affine)
        return cls(inputs, in_aff, masks, tvols, taff, size=size, target_sizes=target_sizes, subjects=subjects)

    def __len__(self) -> int:
        return len(self.centres)

    def target_shape(self, name: str) -> tuple[int, int, int, int]:
        """Shape (C', q, q, q) of one target patch."""
        g = self.geometry[name][0]
        return (self._targets[name][0].shape[-1], g.size, g.size, g.size)

    def _cut_input(self, n: int, out: np.ndarray) -> None:
        s, i, j, k = self.centres[n]
        p = self.size
        out[...] = self._inputs[s][i : i + p, j : j + p, k : k + p]

    def _cut_target(self, name: str, n: int, out: np.ndarray) -> None:
        s, i, j, k = self.centres[n]
        g = self.geometry[name][s]
        r, c = g.ratio, (g.full_size - g.size) // 2
        a, b, d, e = r * i + c, r * j + c, r * k + c, g.size
        out[...] = self._targets[name][s][a : a + e, b : b + e, d : d + e]

    def __getitem__(self, n: int):
        """One sample: (input patch (C, p, p, p), {target: patch (C', q, q, q)})."""
        n = int(n)
        if not -len(self) <= n < len(self):
            raise IndexError(n)
        x, ys = self.batch([n % len(self)])
        return x[0], {t: y[0] for t, y in ys.items()}

    def batch(self, indices) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A minibatch: (B, C, p, p, p) inputs and {target: (B, C', q, q, q)}.

        The arrays are channel-first views of channels-last buffers (see the module docstring).
        """
        indices = np.asarray(indices, dtype=np.int64)
        p = self.size
        x = np.empty((len(indices), p, p, p, self.in_channels), np.float32)
        for b, n in enumerate(indices):
            self._cut_input(n, x[b])
        return np.moveaxis(x, -1, 1), self.target_batch(indices)

    def target_batch(self, indices) -> dict[str, np.ndarray]:
        """The target patches of a minibatch only, {target: (B, C', q, q, q)}, as :meth:`batch`
        gives them (for scoring, where the input patches are not needed)."""
        indices = np.asarray(indices, dtype=np.int64)
        ys = {}
        for t in self.target_names:
            c, q = self.target_shape(t)[:2]
            ys[t] = np.empty((len(indices), q, q, q, c), np.float32)
            for b, n in enumerate(indices):
                self._cut_target(t, n, ys[t][b])
        return {t: np.moveaxis(y, -1, 1) for t, y in ys.items()}

    def subject_index(self) -> np.ndarray:
        """Subject index (into ``subjects``) of every patch."""
        return self.centres[:, 0].copy()


def split_by_patch(n: int, *, test_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The MSP paper's split: a seeded random ``1 - test_fraction`` / ``test_fraction`` of patches."""
    if not 0 < test_fraction < 1:
        raise InputError(f"the test fraction must be between 0 and 1, got {test_fraction}.")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction))) if n > 1 else 0
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def split_by_subject(
    sampler: PatchSampler, *, test_subjects: list[str] | None = None, n_test: int = 1, seed: int = 0, source=None
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out subjects: every patch of a test subject is in the test split, no other.

    Give ``test_subjects`` by name, or ``n_test`` subjects are drawn with ``seed`` (at least one
    subject is left to train on); errors name ``source`` (the config).
    """
    from mrharmony.data.splits import held_out_subjects

    names = sampler.subjects
    test_subjects = held_out_subjects(names, named=test_subjects, n=n_test, seed=seed, keep=1, source=source)
    test_ids = np.array([names.index(s) for s in test_subjects])
    is_test = np.isin(sampler.subject_index(), test_ids)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
