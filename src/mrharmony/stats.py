"""Paired comparisons of methods on the same test items: Wilcoxon signed-rank + Bonferroni.

One implementation serves both wings: :func:`paired_test` compares two methods' errors (or
scores) on the same items, :func:`bonferroni` corrects a table of such tests for their number.
:func:`paired_tests` runs them between every pair of methods (the dMRI wing's patch errors);
the structural wing's :func:`mrharmony.structural.metrics.paired_tests` pairs its test subjects
(each one's mean over its site pairs) and calls :func:`paired_test` for each comparison.
Intervals: :func:`mean_ci` (a bootstrap over subjects), :func:`t_interval` (Student's t over
training runs), and for group effects :func:`effect_ci`, :func:`effect_ratio_ci` and
:func:`group_difference` (patients minus controls, raw and standardized).

Examples:
    >>> import numpy as np
    >>> a = np.linspace(0.0, 1.0, 20)
    >>> paired_test(a, a)["p"]     # identical errors: no difference
    1.0
"""

from __future__ import annotations

import itertools

import numpy as np


def paired_test(a, b) -> dict:
    """Two-sided Wilcoxon signed-rank test (scipy, zeros dropped) of ``a`` against ``b``, the
    same items in the same order: ``n``, ``median_difference`` (median of a - b) and ``p``
    (1 when every pair is equal)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError("the two methods were not scored on the same items")
    p = float(wilcoxon(a, b, zero_method="wilcox").pvalue) if np.any(a != b) else 1.0
    return {"n": int(a.size), "median_difference": float(np.median(a - b)), "p": p}


def bonferroni(tests: list[dict], n_comparisons: int | None = None) -> list[dict]:
    """Add ``p_bonferroni`` to each test (in place): p times ``n_comparisons`` (default: the
    number of tests), at most 1. Returns ``tests``."""
    m = n_comparisons or len(tests)
    for t in tests:
        t["p_bonferroni"] = min(1.0, t["p"] * m)
    return tests


def paired_tests(errors: dict[str, np.ndarray], *, n_comparisons: int | None = None) -> list[dict]:
    """Two-sided Wilcoxon signed-rank tests between every pair of methods (:func:`paired_test`).

    Args:
        errors: per method, the per-patch errors on the same patches, in the same order.
        n_comparisons: number of tests the Bonferroni correction accounts for (default: the
            pairs here; pass the total over all targets to correct across the whole table).

    Returns:
        One dict per pair: ``a``, ``b``, ``median_difference`` (a - b), ``p`` and
        ``p_bonferroni`` (p times the number of comparisons, at most 1).
    """
    out = []
    for a, b in itertools.combinations(errors, 2):
        try:
            t = paired_test(errors[a], errors[b])
        except ValueError:
            raise ValueError(f"{a} and {b} were not evaluated on the same patches") from None
        out.append({"a": a, "b": b, "median_difference": t["median_difference"], "p": t["p"]})
    return bonferroni(out, n_comparisons)


#: the fewest subjects a bootstrap interval over subjects is shown for (two values bound nothing)
MIN_INTERVAL_SUBJECTS = 3


def mean_ci(values, *, n_boot: int = 4000, seed: int = 0) -> dict:
    """Mean of independent units (subjects) with a 95% percentile bootstrap interval over them:
    ``{"mean": m, "ci95": [lo, hi]}`` (the interval is the mean itself for a single unit)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        raise ValueError("no values to average")
    if v.size == 1:
        return {"mean": float(v[0]), "ci95": [float(v[0]), float(v[0])]}
    rng = np.random.default_rng(seed)
    boot = v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"mean": float(v.mean()), "ci95": [float(lo), float(hi)]}


def cohens_d(a, b) -> float:
    """Cohen's d of group ``a`` against group ``b``: (mean a - mean b) / pooled standard deviation."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError("Cohen's d needs at least two values per group")
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def effect_ci(a, b, *, n_boot: int = 4000, seed: int = 0) -> dict:
    """Cohen's d of ``a`` against ``b`` with a 95% percentile bootstrap interval (subjects
    resampled within each group): ``{"mean": d, "ci95": [lo, hi]}``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = cohens_d(a, b)
    ci = _group_bootstrap(
        lambda ia, ib: cohens_d(a[ia], b[ib]),
        lambda ia, ib: np.ptp(a[ia]) > 0 or np.ptp(b[ib]) > 0,
        a.size,
        b.size,
        point=d,
        n_boot=n_boot,
        seed=seed,
    )
    return {"mean": d, "ci95": ci}


def effect_ratio_ci(a, b, a_ref, b_ref, *, n_boot: int = 4000, seed: int = 0) -> dict:
    """Cohen's d of ``a`` against ``b`` over Cohen's d of ``a_ref`` against ``b_ref``, where
    ``a[i]`` and ``a_ref[i]`` (and ``b[j]``, ``b_ref[j]``) are the same subject measured two ways
    (e.g. harmonized and on the target scanner): 1 when harmonization keeps a group effect. A 95%
    percentile bootstrap interval resamples subjects within each group, the same subjects on both
    sides: ``{"mean": ratio, "ci95": [lo, hi]}``."""
    a, b, a_ref, b_ref = (np.asarray(x, np.float64) for x in (a, b, a_ref, b_ref))
    if a.shape != a_ref.shape or b.shape != b_ref.shape:
        raise ValueError("each group needs the same subjects on both sides")
    ratio = cohens_d(a, b) / cohens_d(a_ref, b_ref)
    ci = _group_bootstrap(
        lambda ia, ib: cohens_d(a[ia], b[ib]) / cohens_d(a_ref[ia], b_ref[ib]),
        lambda ia, ib: np.ptp(a_ref[ia]) > 0 or np.ptp(b_ref[ib]) > 0,
        a.size,
        b.size,
        point=ratio,
        n_boot=n_boot,
        seed=seed,
    )
    return {"mean": float(ratio), "ci95": ci}


def _group_bootstrap(statistic, spread, n_a: int, n_b: int, *, point: float, n_boot: int, seed: int) -> list[float]:
    """A 95% percentile bootstrap interval of ``statistic(ia, ib)`` over resamples of subjects
    within each group (index arrays into groups of ``n_a`` and ``n_b`` subjects), a resample
    counted only where ``spread(ia, ib)``: one repeated value has no spread, and no Cohen's d.
    ``point`` stands for the interval when no resample counts."""
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        ia, ib = rng.integers(0, n_a, n_a), rng.integers(0, n_b, n_b)
        if spread(ia, ib):
            boot.append(statistic(ia, ib))
    lo, hi = np.nanpercentile(boot, [2.5, 97.5]) if boot else (point, point)
    return [float(lo), float(hi)]


def group_difference(
    controls, patients, ref_controls=None, ref_patients=None, *, n_boot: int = 4000, seed: int = 0
) -> dict:
    """The difference between two groups, **patients minus controls**, as a study reports it:
    ``diff`` (the difference of the group means, in the values' unit), ``sd`` (the pooled
    within-group standard deviation) and ``d`` (Cohen's d, ``diff / sd``); with ``ref_controls``
    and ``ref_patients``, the same subjects measured another way (the target scans),
    ``diff_ratio``: ``diff`` over theirs. Each is ``{"mean", "ci95"}``: the value and a 95%
    percentile bootstrap interval over resamples of the subjects within each group (the same
    resamples on both sides of the ratio; a resample without spread counts for no ``d``, one
    without a reference difference for no ratio).

    Examples:
        >>> group_difference([1.0, 2.0, 3.0], [3.0, 4.0, 5.0])["d"]["mean"]
        2.0
    """
    a, b = np.asarray(controls, np.float64), np.asarray(patients, np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError("a group difference needs at least two subjects per group")
    paired = ref_controls is not None
    if paired:
        a_ref, b_ref = np.asarray(ref_controls, np.float64), np.asarray(ref_patients, np.float64)
        if a_ref.shape != a.shape or b_ref.shape != b.shape:
            raise ValueError("each group needs the same subjects on both sides")
    rng = np.random.default_rng(seed)
    ia, ib = rng.integers(0, a.size, (n_boot, a.size)), rng.integers(0, b.size, (n_boot, b.size))
    point, boot = _difference(a[None], b[None]), _difference(a[ia], b[ib])
    if paired:
        point["diff_ratio"] = _ratio(point["diff"], _difference(a_ref[None], b_ref[None])["diff"])
        boot["diff_ratio"] = _ratio(boot["diff"], _difference(a_ref[ia], b_ref[ib])["diff"])
    out = {}
    for k, v in point.items():
        sample = boot[k][np.isfinite(boot[k])]
        value = float(v[0])
        ci = np.percentile(sample, [2.5, 97.5]) if sample.size else (value, value)
        out[k] = {"mean": value, "ci95": [float(ci[0]), float(ci[1])]}
    return out


def _difference(a: np.ndarray, b: np.ndarray) -> dict:
    """diff, sd and d of groups ``a`` (k, n_a) and ``b`` (k, n_b), one value per row k."""
    diff = b.mean(axis=1) - a.mean(axis=1)
    na, nb = a.shape[1], b.shape[1]
    sd = np.sqrt(((na - 1) * a.var(axis=1, ddof=1) + (nb - 1) * b.var(axis=1, ddof=1)) / (na + nb - 2))
    return {"diff": diff, "sd": sd, "d": _ratio(diff, sd)}


def _ratio(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x / y, NaN where y is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y != 0, x / np.where(y != 0, y, 1.0), np.nan)


def t_interval(values) -> dict:
    """Mean and 95% Student-t interval of independent units (training runs, folds): ``{"mean",
    "ci95", "n"}`` (the interval is the mean itself for a single unit)."""
    from scipy.stats import t as student

    v = np.asarray(values, np.float64)
    m = float(v.mean())
    if v.size < 2:
        return {"mean": m, "ci95": [m, m], "n": int(v.size)}
    half = float(student.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return {"mean": m, "ci95": [m - half, m + half], "n": int(v.size)}
