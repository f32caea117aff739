"""The dMRI sections of the report: what harmonization did to the FA / MD differences between
platforms, shown before it is tabulated.

* :func:`glance`: per target and measure (FA and MD against the target scan; against the
  noiseless target on simulated data), the value of no harmonization, of the best statistical
  method and of the best learned one, and the rescan floor: means over the held-out subjects,
  with a 95% bootstrap interval over subjects where there are three or more;
* :func:`subject_maps`: for one held-out subject and target, FA, MD, DEC FA and the first SH
  coefficient of the input (no harmonization), of the chosen methods, of the target scan and,
  on simulated data, of the noiseless target, on one axial slice, every map through the one
  path of the evaluation (:meth:`~mrharmony.dmri.harmonizer.Harmonizer.dti_of`);
* :func:`regional_agreement`: regional means (cubes of about 10 mm inside the brain) of FA and
  MD of those methods and of the target scan, for Bland-Altman plots of the remaining
  difference.
"""

from __future__ import annotations

import numpy as np

#: the rows that are floors, not methods (simulated data)
FLOORS = ("rescan", "oracle")
#: (key of a volume-error row, what it measures), in the order the summary shows them
MEASURES = (
    ("fa_mae", "FA vs target scan"),
    ("md_mae", "MD vs target scan"),
    ("fa_mae_noiseless", "FA vs noiseless target"),
    ("md_mae_noiseless", "MD vs noiseless target"),
)
#: the size of the cubes of the regional means (mm)
REGION_MM = 10.0


def learned_rows(ev) -> list[str]:
    """The rows of trained networks (those with a parameter count)."""
    return [m for m in ev.methods if ev.parameters.get(m) is not None]


def statistical_rows(ev) -> list[str]:
    """The rows of statistical methods that harmonize (no harmonization and the floors aside)."""
    return [m for m in ev.methods if ev.parameters.get(m) is None and m != "none" and m not in FLOORS]


def _by_subject(ev, target: str, key: str) -> dict[str, dict[str, float]]:
    """method -> subject -> value of ``key`` for ``target``."""
    out: dict[str, dict[str, float]] = {}
    for r in ev.volume_errors:
        if r["target"] == target and r.get(key) is not None:
            out.setdefault(r["method"], {})[r["subject"]] = float(r[key])
    return out


def _cell(values: dict[str, float]) -> dict:
    from mrharmony.report.format import subject_cell

    return subject_cell(values[s] for s in sorted(values))


def glance(ev) -> dict:
    """``{target: {measure key: {"none", "statistical", "learned", "rescan", "oracle": cell}}}``
    where a cell is ``{"mean", "ci95" (None under three subjects), "n"}`` and the two best ones
    also carry ``"method"`` (lowest mean of that measure); a missing row is left out."""
    out: dict = {}
    learned, statistical = learned_rows(ev), statistical_rows(ev)
    for t in ev.targets:
        for key, _ in MEASURES:
            rows = _by_subject(ev, t, key)
            if "none" not in rows:
                continue
            entry = {"none": _cell(rows["none"])}
            for kind, names in (("statistical", statistical), ("learned", learned)):
                have = [m for m in names if m in rows]
                if have:
                    best = min(have, key=lambda m: np.mean(list(rows[m].values())))
                    entry[kind] = {**_cell(rows[best]), "method": best}
            for floor in FLOORS:
                if floor in rows:
                    entry[floor] = _cell(rows[floor])
            out.setdefault(t, {})[key] = entry
    return out


#: a picture shows every method up to this many (else the best statistical and learned ones and MSP)
MAX_PICTURED = 8


def pictured_methods(ev, target: str) -> list[str]:
    """The methods the held-out subject's maps show for ``target``: every method that predicts it
    (no harmonization is the ``input`` column), or :func:`chosen_methods` where they are more
    than :data:`MAX_PICTURED`."""
    every = [
        m
        for m in ev.methods
        if m != "none" and m not in FLOORS and any(r["method"] == m and r["target"] == target for r in ev.volume_errors)
    ]
    return every if len(every) <= MAX_PICTURED else chosen_methods(ev, target)


def chosen_methods(ev, target: str) -> list[str]:
    """The methods a picture shows for ``target``: the best statistical method and the best
    learned one on FA against the target scan (MSP as well where it is not the best)."""
    g = glance(ev).get(target, {}).get("fa_mae", {})
    chosen = [g[k]["method"] for k in ("statistical", "learned") if k in g]
    if "msp" in ev.methods and "msp" not in chosen:
        chosen.append("msp")
    return chosen


def slice_with_most_brain(mask: np.ndarray) -> int:
    """The axial slice of ``mask`` with the most brain voxels (the middle one of an empty mask)."""
    return int(np.argmax(mask.sum(axis=(0, 1)))) if mask.any() else mask.shape[2] // 2


class HeldOutSubject:
    """One held-out subject as the report's pictures see it: the input's features, the target
    scans (a :class:`~mrharmony.dmri.evaluate.TargetReference`, the evaluation's own when it kept
    it) and each harmonizer's predictions, made once for every picture."""

    def __init__(self, rows, subject: str, reference=None):
        from mrharmony.dmri.evaluate import TargetReference
        from mrharmony.dmri.features.prepare import load_features

        self.rows, self.subject = rows, subject
        self.reference = reference or TargetReference(rows.dataset, subject)
        self.features = load_features(rows.dataset, subject, rows.dataset.input_platform.name)
        self._predictions: dict = {}
        self._inputs: dict = {}

    def harmonizer(self, name: str, target: str):
        if name == "input":
            return self.rows.identity
        return next(h for n, h in zip(self.rows.names, self.rows.harmonizers) if n == name and target in h.targets)

    def input_of(self, h):
        """The input's features as ``h`` takes them (denoised or not)."""
        if h.denoise == "none":
            return self.features
        if h.denoise not in self._inputs:
            self._inputs[h.denoise] = h.input_features(self.rows.dataset, self.subject)
        return self._inputs[h.denoise]

    def predict(self, h) -> dict:
        """``h``'s predictions for every target it has (once per harmonizer)."""
        if id(h) not in self._predictions:
            self._predictions[id(h)] = h.predict(self.input_of(h))
        return self._predictions[id(h)]

    def maps(self, name: str, target: str, where: np.ndarray) -> tuple:
        """(FA, MD, DEC FA, raw SH coefficients or None) of a row (``input``: no harmonization) on ``where``."""
        h = self.harmonizer(name, target)
        _, gradients = self.reference.scan(target)
        if not h.predicts_sh:  # a method of DTI maps
            fa, md, dec = h.predict_dti(self.input_of(h), gradients={target: gradients}, masks={target: where})[target]
            return fa, md, dec, None
        y = self.predict(h)[target]
        return (*h.dti_of(y, target, where, gradients=gradients), h.target_coefficients(y, target))

    def reference_maps(self, kind: str, target: str, where: np.ndarray) -> tuple:
        """(FA, MD, DEC FA, raw SH coefficients) of the target ``scan``, the ``noiseless`` target or a ``rescan``."""
        return (*self.reference.maps(kind, target, where), self.reference.features(kind, target))


def subject_maps(subject: HeldOutSubject, target: str, methods: list[str]) -> tuple[dict, np.ndarray]:
    """``({label: {"FA", "MD", "DEC FA", "SH c0": 2D map}}, brain mask of the slice)`` on the axial
    slice of ``target``'s grid with the most brain, for: ``input`` (no harmonization), each of
    ``methods``, ``target scan`` and, on simulated data, ``noiseless target``. Only that slice is
    fitted."""
    tf, _ = subject.reference.scan(target)
    z = slice_with_most_brain(tf.mask)
    where = np.zeros_like(tf.mask)
    where[:, :, z] = tf.mask[:, :, z]

    def picked(fa, md, dec, y) -> dict:
        return {
            "FA": fa[:, :, z],
            "MD": md[:, :, z],
            "DEC FA": dec[:, :, z],
            "SH c0": None if y is None else y[:, :, z, 0],
        }

    out = {m: picked(*subject.maps(m, target, where)) for m in ["input", *methods]}
    out["target scan"] = picked(*subject.reference_maps("scan", target, where))
    if subject.reference.simulated:
        out["noiseless target"] = picked(*subject.reference_maps("noiseless", target, where))
    return out, tf.mask[:, :, z]


def regional_agreement(subject: HeldOutSubject, target: str, methods: list[str], *, max_regions: int = 150) -> dict:
    """Regional means of FA and MD on ``target`` (cubes of about :data:`REGION_MM` mm, at least half
    brain; ``max_regions`` of them drawn by a generator seeded with the subject and target) for
    ``input`` (no harmonization), each of ``methods`` and, on simulated data, a ``rescan`` of the
    subject, beside the target scan's: ``{"scan": {"FA": (R,), "MD": (R,)}, label: {...}}``."""
    import zlib

    from mrharmony.registration import block_mean

    tf, _ = subject.reference.scan(target)
    from mrharmony.data.images import voxel_size

    voxel = float(np.mean(voxel_size(tf.affine)))
    r = max(1, int(round(REGION_MM / voxel)))
    brain = block_mean(tf.mask.astype(np.float32), r)
    regions = np.flatnonzero(brain >= 0.5)
    if regions.size > max_regions:
        rng = np.random.default_rng(zlib.crc32(f"{subject.subject}/{target}".encode()))
        regions = np.sort(rng.choice(regions, max_regions, replace=False))
    keep = np.zeros(brain.size, bool)
    keep[regions] = True
    keep = keep.reshape(brain.shape)
    # the voxels of the chosen regions (the fine grid's blocks; a remainder at the edge is left out)
    where = np.zeros_like(tf.mask)
    cut = tuple(n * r for n in brain.shape)
    where[: cut[0], : cut[1], : cut[2]] = np.repeat(np.repeat(np.repeat(keep, r, 0), r, 1), r, 2)
    where &= tf.mask

    def regional(fa, md) -> dict:
        m = where.astype(np.float32)
        weight = block_mean(m, r)[keep]
        return {name: block_mean(v * m, r)[keep] / weight for name, v in (("FA", fa), ("MD", md))}

    out = {
        "scan": regional(*subject.reference_maps("scan", target, where)[:2]),
        **{m: regional(*subject.maps(m, target, where)[:2]) for m in ["input", *methods]},
    }
    if subject.reference.simulated:
        out["rescan"] = regional(*subject.reference_maps("rescan", target, where)[:2])
    return out
