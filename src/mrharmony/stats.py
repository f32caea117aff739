"""Paired comparisons of methods on the same test patches: Wilcoxon signed-rank + Bonferroni."""

from __future__ import annotations

import itertools

import numpy as np


def paired_tests(errors: dict[str, np.ndarray], *, n_comparisons: int | None = None) -> list[dict]:
    """Two-sided Wilcoxon signed-rank tests between every pair of methods (scipy).

    Args:
        errors: per method, the per-patch errors on the same patches, in the same order.
        n_comparisons: number of tests the Bonferroni correction accounts for (default: the
            pairs here; pass the total over all targets to correct across the whole table).

    Returns:
        One dict per pair: ``a``, ``b``, ``median_difference`` (a - b), ``p`` and
        ``p_bonferroni`` (p times the number of comparisons, at most 1).
    """
    from scipy.stats import wilcoxon

    pairs = list(itertools.combinations(errors, 2))
    m = n_comparisons or len(pairs)
    out = []
    for a, b in pairs:
        ea, eb = np.asarray(errors[a], np.float64), np.asarray(errors[b], np.float64)
        if ea.shape != eb.shape:
            raise ValueError(f"{a} and {b} were not evaluated on the same patches")
        d = ea - eb
        p = 1.0 if not np.any(d != 0) else float(wilcoxon(ea, eb, zero_method="wilcox").pvalue)
        out.append({"a": a, "b": b, "median_difference": float(np.median(d)), "p": p,
                    "p_bonferroni": min(1.0, p * m)})
    return out
