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
MEASURES = (("fa_mae", "FA vs target scan"), ("md_mae", "MD vs target scan"),
            ("fa_mae_noiseless", "FA vs noiseless target"), ("md_mae_noiseless", "MD vs noiseless target"))
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
    from mrharmony.stats import mean_ci

    v = [values[s] for s in sorted(values)]
    c = mean_ci(v)
    return {"mean": c["mean"], "ci95": c["ci95"] if len(v) >= 3 else None, "n": len(v)}


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


def chosen_methods(ev, target: str) -> list[str]:
    """The methods a picture shows for ``target``: the best statistical method and the best
    learned one on FA against the target scan (MSP as well where it is not the best)."""
    g = glance(ev).get(target, {}).get("fa_mae", {})
    chosen = [g[k]["method"] for k in ("statistical", "learned") if k in g]
    if "msp" in ev.methods and "msp" not in chosen:
        chosen.append("msp")
    return chosen


def _slice_of(mask: np.ndarray) -> int:
    return int(np.argmax(mask.sum(axis=(0, 1)))) if mask.any() else mask.shape[2] // 2


def subject_maps(rows, subject: str, target: str, methods: list[str]) -> tuple[dict, np.ndarray]:
    """``({label: {"FA", "MD", "DEC FA", "SH c0": 2D map}}, brain mask of the slice)`` on the axial
    slice of ``target``'s grid with the most brain, for: ``input`` (no harmonization), each of
    ``methods`` (rows of :func:`~mrharmony.dmri.evaluate.table_rows_of` ``rows``), ``target
    scan`` and, on simulated data, ``noiseless target``. Only that slice is fitted."""
    from mrharmony.dmri.evaluate import TargetReference
    from mrharmony.dmri.features.prepare import load_features

    ds = rows.dataset
    reference = TargetReference(ds, subject)
    f = load_features(ds, subject, ds.input_platform.name)
    tf, gradients = reference.scan(target)
    z = _slice_of(tf.mask)
    where = np.zeros_like(tf.mask)
    where[:, :, z] = tf.mask[:, :, z]
    identity = rows.identity

    def maps_of(h, y) -> dict:
        fa, md, dec = h.dti_of(y, target, where, gradients=gradients)
        return {"FA": fa[:, :, z], "MD": md[:, :, z], "DEC FA": dec[:, :, z], "SH c0": y[:, :, z, 0]}

    out = {"input": maps_of(identity, identity.predict(f)[target])}
    for m in methods:
        h = next(h for n, h in zip(rows.names, rows.harmonizers) if n == m and target in h.targets)
        if h.predicts_sh:
            out[m] = maps_of(h, h.predict(f)[target])
        else:  # a method of DTI maps
            fa, md, dec = h.predict_dti(f, gradients={target: gradients}, masks={target: where})[target]
            out[m] = {"FA": fa[:, :, z], "MD": md[:, :, z], "DEC FA": dec[:, :, z], "SH c0": None}
    out["target scan"] = maps_of(identity, tf.data)
    if reference.simulated:
        out["noiseless target"] = maps_of(identity, reference.noiseless_features(target))
    return out, tf.mask[:, :, z]


def regional_agreement(rows, subject: str, target: str, methods: list[str]) -> dict:
    """Regional means of FA and MD (cubes of about :data:`REGION_MM` mm, at least half brain) on
    ``target`` for ``input`` (no harmonization), each of ``methods`` and, on simulated data, a
    ``rescan`` of the subject, beside the target scan's:
    ``{"scan": {"FA": (R,), "MD": (R,)}, label: {...}}``."""
    from mrharmony.dmri.evaluate import TargetReference
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.registration import block_mean

    ds = rows.dataset
    reference = TargetReference(ds, subject)
    f = load_features(ds, subject, ds.input_platform.name)
    tf, gradients = reference.scan(target)
    identity = rows.identity
    voxel = float(np.mean(np.abs(np.diag(tf.affine)[:3])))
    r = max(1, int(round(REGION_MM / voxel)))
    brain = block_mean(tf.mask.astype(np.float32), r)
    keep = brain >= 0.5

    def regional(fa, md) -> dict:
        m = tf.mask.astype(np.float32)
        return {name: (block_mean(v * m, r)[keep] / brain[keep]) for name, v in (("FA", fa), ("MD", md))}

    def of_features(h, y) -> dict:
        fa, md, _ = h.dti_of(y, target, tf.mask, gradients=gradients)
        return regional(fa, md)

    out = {"scan": of_features(identity, tf.data), "input": of_features(identity, identity.predict(f)[target])}
    for m in methods:
        h = next(h for n, h in zip(rows.names, rows.harmonizers) if n == m and target in h.targets)
        if h.predicts_sh:
            out[m] = of_features(h, h.predict(f)[target])
        else:
            fa, md, _ = h.predict_dti(f, gradients={target: gradients}, masks={target: tf.mask})[target]
            out[m] = regional(fa, md)
    if reference.simulated:
        out["rescan"] = of_features(identity, reference.rescan_features(target))
    return out
