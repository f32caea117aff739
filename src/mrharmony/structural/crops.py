"""Training crops of structural images: the images of a run's subjects and sites, normalized,
and triplets of crops drawn from them (the structural wing's sampler, as
:mod:`mrharmony.dmri.patches` is the dMRI wing's)."""

from __future__ import annotations

import numpy as np

from mrharmony.errors import InputError


class CropSampler:
    """Triplets of crops (input, style of another site, same site) from normalized images.

    ``images[subject][modality][site]`` are float32 volumes divided by their brain's 99th
    percentile, ``masks[subject]`` bool volumes. ``crop`` is the crop's shape: (c, c, c) for 3D
    networks, (c, c, 1) for slices; ``whole_slices``: whole slices as they are (zero-padded at
    the end of each axis to ``crop``), a slice drawn from the brain's extent.
    """

    def __init__(
        self,
        images: dict[str, dict[str, dict[str, np.ndarray]]],
        masks: dict[str, np.ndarray],
        crop: tuple[int, int, int],
        *,
        whole_slices: bool = False,
    ):
        self.images, self.crop, self.whole_slices = images, np.asarray(crop), whole_slices
        self.masks = {s: m.astype(np.float32) for s, m in masks.items()}  # once, not per crop
        self.subjects = sorted(images)
        first = next(iter(images.values()))
        self.modalities = list(first)
        self.sites = sorted(next(iter(first.values())))
        self.bbox = {}
        for s, m in masks.items():
            idx = np.argwhere(m)
            self.bbox[s] = (idx.min(0), idx.max(0) + 1)

    def _cut(self, vol: np.ndarray, subject: str, frac: np.ndarray) -> np.ndarray:
        lo, hi = self.bbox[subject]
        c = self.crop
        start = np.where(hi - lo > c, lo + np.round(frac * (hi - lo - c)).astype(int), lo - (c - (hi - lo)) // 2)
        if self.whole_slices:
            start[:2] = 0
        out = np.zeros(tuple(c), np.float32)
        src = tuple(slice(max(a, 0), min(a + k, n)) for a, k, n in zip(start, c, vol.shape))
        dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, start))
        out[dst] = vol[src]
        return out

    def _pick(self, rng, options: list[str], avoid: str) -> str:
        rest = [o for o in options if o != avoid]
        return str(rng.choice(rest if rest else options))

    def triplets(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Arrays (n, 1, *crop): ``x``/``mx`` input, ``t``/``mt`` style (another subject and site),
        ``s``/``ms`` another subject on the input's site; all of one modality."""
        out: dict[str, list] = {k: [] for k in ("x", "mx", "t", "mt", "s", "ms")}
        for _ in range(n):
            a = str(rng.choice(self.subjects))
            i = str(rng.choice(self.sites))
            b, j = self._pick(rng, self.subjects, a), self._pick(rng, self.sites, i)
            c = self._pick(rng, self.subjects, a)
            frac = rng.random(3)
            mod = self.modalities[0] if len(self.modalities) == 1 else str(rng.choice(self.modalities))
            for key, subj, site in (("x", a, i), ("t", b, j), ("s", c, i)):
                out[key].append(self._cut(self.images[subj][mod][site], subj, frac))
                out["m" + key].append(self._cut(self.masks[subj], subj, frac))
        return {k: np.stack(v)[:, None] for k, v in out.items()}


def load_images(ds, subjects: list[str], sites: list[str], modalities: list[str], quiet: bool = True):
    """Normalized images and masks of ``subjects`` on ``sites`` (see :class:`CropSampler`)."""
    from mrharmony.progress import Progress
    from mrharmony.structural.base import brain_scale

    images, masks = {}, {}
    bar = Progress(total=len(subjects) * len(sites) * len(modalities), unit="images", desc="read images", quiet=quiet)
    for s in subjects:
        images[s] = {m: {} for m in modalities}
        for m in modalities:
            for site in sites:
                img, _ = ds.load_image(s, site, m)
                if s not in masks:
                    masks[s] = ds.load_mask(s, img)
                if img.shape != masks[s].shape:
                    raise InputError(
                        f"has shape {img.shape} but the subject's mask has {masks[s].shape}.", ds.image_path(s, site, m)
                    )
                images[s][m][site] = (img / brain_scale(img, masks[s])).astype(np.float32)
                bar.update(1)
    bar.close()
    return images, masks
