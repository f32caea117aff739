"""Metrics of structural harmonization (the HAIL paper's, and those our synthetic truth allows).

* ``nWD(i, p)`` and ``nWD(t, p)``: the 1-Wasserstein distance (scipy) between the brain-mask
  intensity distributions of input and prediction, and of target and prediction, each divided
  by that of input and target. A prediction that takes the target's appearance scores 1 and 0;
  one that leaves the input as it was scores 0 and 1.
* ``rAVD`` for GM and WM: ``|V_p - V_i| / V_i`` of the tissue volumes of segmentations of input
  and prediction (dipy's HMRF tissue classifier, three classes by intensity, named by the
  modality's tissue order: CSF < GM < WM in T1w, WM < GM < CSF in T2w, CSF < WM < GM in FLAIR).
  Harmonization should change appearance, not anatomy: 0 is ideal.
* ``Dice`` of GM and WM between the same two segmentations: the anatomy kept voxel by voxel.
* ``SSIM`` and ``PSNR`` against the truth (the same subject seen by the target site), inside
  the brain mask (scikit-image's SSIM map averaged over the mask; PSNR on the truth's range).

What a study measures, against the same person's image at the target site (:data:`AGREEMENT`):

* ``gm_ml``, ``wm_ml``, ``csf_ml``: the tissue volumes of the prediction: its partial volumes
  between the class means of its segmentation (:func:`partial_volumes`), summed.
* ``target_vd_gm`` / ``_wm``: ``|V_p - V_t| / V_t``, the relative volume difference to the
  volume of the subject's own image on the target site (0: the volume the target site
  measures); ``target_dice_gm`` / ``_wm``: the Dice overlap with that image's segmentation.
* ``truth_vd_gm`` / ``_wm``: the relative volume difference to the simulator's tissue fractions
  (where the dataset has them): what any segmentation of any site is measured against.

Tables of them: :func:`summarize` (mean and std per modality, group of site pairs and method),
:func:`paired_tests` (Wilcoxon + Bonferroni, :mod:`mrharmony.stats`) and :func:`markdown_table`;
the rows come from :mod:`mrharmony.structural.evaluate`.
"""

from __future__ import annotations

import numpy as np

from mrharmony.data.masks import brain_mask  # the automatic mask where none is given

CLASSES = {"csf": 1, "gm": 2, "wm": 3}


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """The 1-Wasserstein distance (scipy) between the values of two arrays (flattened)."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.ravel(a), np.ravel(b)))


def nwd(
    input_img: np.ndarray, pred: np.ndarray, target: np.ndarray, *, input_mask: np.ndarray, target_mask: np.ndarray
) -> tuple[float, float]:
    """The normalized Wasserstein distances of a prediction to its input and to its target.

    Parameters
    ----------
    input_img
        The input image.
    pred
        The prediction, on the input's grid.
    target
        The target image (any grid).
    input_mask, target_mask
        The brain masks of input (and prediction) and of target.

    Returns
    -------
    tuple of float
        nWD(i, p) and nWD(t, p): the distances of the brain intensity distributions of input and
        prediction, and of target and prediction, each divided by that of input and target (a
        prediction with the target's appearance scores 1 and 0).

    Raises
    ------
    ValueError
        Input and target with the same intensity distribution (nWD is undefined).
    """
    i, p, t = input_img[input_mask], pred[input_mask], target[target_mask]
    base = wasserstein(i, t)
    if base == 0:
        raise ValueError("input and target have the same intensity distribution: nWD is undefined")
    return wasserstein(i, p) / base, wasserstein(t, p) / base


def _kept(new: tuple, mu: np.ndarray, sigmasq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's new class means and variances, except for a class left empty (a flat or
    degenerate image, such as a poorly trained network's output): it keeps its previous ones."""
    new_mu, new_sig = (np.asarray(v, np.float64).copy() for v in new)
    bad = ~np.isfinite(new_mu) | ~np.isfinite(new_sig) | (new_sig <= 0)
    new_mu[bad], new_sig[bad] = mu[bad], np.maximum(sigmasq[bad], 1e-6)
    return new_mu, new_sig


# the tissues from dark to bright in each modality
TISSUE_ORDER = {"T1w": ("csf", "gm", "wm"), "T2w": ("wm", "gm", "csf"), "FLAIR": ("csf", "wm", "gm")}


def segment_tissues(
    img: np.ndarray,
    mask: np.ndarray,
    *,
    modality: str = "T1w",
    beta: float = 0.1,
    max_iter: int = 20,
    tolerance: float = 1e-5,
) -> np.ndarray:
    """Tissue labels of an image inside a mask: dipy's hidden Markov random field classifier.

    Its observation model and iterated conditional modes, as in ``TissueClassifierHMRF``, with
    three classes by intensity, named by the modality's tissue order :data:`TISSUE_ORDER`. Two
    things differ from ``TissueClassifierHMRF.classify``: the class means start from a 1D k-means
    of the brain's intensities rather than evenly spaced, so that two close tissues (GM and WM in
    T2w, where CSF is far brighter) are not merged; and the background gets fixed small values
    rather than draws from the global random generator, so that a segmentation is the same on
    every run.

    Parameters
    ----------
    img
        The image (3D).
    mask
        Its brain mask.
    modality
        ``T1w``, ``T2w`` or ``FLAIR``: which tissue is dark and which bright.
    beta
        The smoothness of the Markov random field.
    max_iter
        Iterations at most.
    tolerance
        Stop when the energy of the last five iterations spans less than this share of its whole
        span (0: run ``max_iter``).

    Returns
    -------
    numpy.ndarray
        uint8 labels: 0 outside the mask, 1 CSF, 2 GM, 3 WM (:data:`CLASSES`).
    """
    from dipy.segment.mrf import ConstantObservationModel, IteratedConditionalModes
    from scipy.cluster.vq import kmeans2

    m = np.asarray(mask, bool)
    vals = img[m].astype(np.float64)
    lo, hi = np.percentile(vals, [0.5, 99.5])
    image = np.zeros(img.shape, np.float64)
    # into (0, 1]: the classifier's class 0 is the background
    image[m] = 0.01 + 0.99 * np.clip((vals - lo) / max(hi - lo, 1e-12), 0, 1)
    centers, _ = kmeans2(
        image[m][:, None], np.percentile(image[m], [10, 50, 90])[:, None], iter=30, minit="matrix", seed=0
    )
    nclasses = 4
    com, icm = ConstantObservationModel(), IteratedConditionalModes()
    mu = np.concatenate([[0.0], np.sort(centers[:, 0])])
    sigmasq = np.full(nclasses, max(float(np.var(image[m])) / 9, 1e-6))
    seg = icm.initialize_maximum_likelihood(com.negloglikelihood(image, mu, sigmasq, nclasses))
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty class: see _kept
        mu, sigmasq = _kept(com.seg_stats(image, seg, nclasses), mu, sigmasq)
    background = 0.001 * (1 + 0.01 * np.cos(np.arange(image.size).reshape(image.shape)))  # fixed, not random
    image_bg = np.where(image == 0, background, image)
    energies = []
    for i in range(max_iter):
        pln = icm.prob_neighborhood(seg, beta, nclasses)
        pve = com.prob_image(image_bg, nclasses, mu, sigmasq, pln)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu, sigmasq = _kept(com.update_param(image_bg, pve, mu, nclasses), mu, sigmasq)
        order = np.argsort(mu)
        mu, sigmasq = mu[order], sigmasq[order]
        seg, energy = icm.icm_ising(com.negloglikelihood(image_bg, mu, sigmasq, nclasses), beta, seg)
        energies.append(energy[energy > -np.inf].sum())
        if tolerance > 0 and i > 5:
            e = np.asarray(energies)
            if np.ptp(e[-5:]) < tolerance * np.ptp(e):
                break
    ranks = np.clip(np.asarray(seg), 0, nclasses - 1).astype(np.uint8)
    ranks[m & (ranks == 0)] = 1  # (none expected) the darkest class inside the brain
    lut = np.array([0] + [CLASSES[t] for t in TISSUE_ORDER[modality]], np.uint8)
    labels = lut[ranks]
    labels[~m] = 0
    return labels


def partial_volumes(img: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each voxel's CSF, GM and WM fractions from its intensity, between the class means of a segmentation.

    The tissues are ordered by their mean intensity inside the mask; a voxel whose intensity lies
    between the means of two neighbouring tissues is a linear mixture of them, one below the
    darkest or above the brightest is that tissue alone (a two-compartment model along the
    intensity axis only, without FAST's spatial neighbourhoods: where two tissues that meet in
    space are not neighbours in intensity, as GM and CSF in FLAIR (CSF < WM < GM) or CSF and WM
    in T1w, their mixtures are read as the tissue between them). Volumes summed from these
    fractions follow a tissue's thinning smoothly, where a hard segmentation moves in whole voxels
    and with its class boundaries.

    Parameters
    ----------
    img
        The image.
    labels
        Its segmentation (:func:`segment_tissues`).
    mask
        The brain mask.

    Returns
    -------
    numpy.ndarray
        (X, Y, Z, 3) float32: CSF, GM and WM fractions, 0 outside the mask.
    """
    m = np.asarray(mask, bool)
    out = np.zeros((*img.shape, 3), np.float32)
    present = [k for k in (1, 2, 3) if np.any(labels[m] == k)]
    if not present:
        return out
    means = {k: float(np.mean(img[m & (labels == k)])) for k in present}
    order = sorted(present, key=lambda k: means[k])
    x = img[m].astype(np.float64)
    frac = np.zeros((x.size, 3))
    frac[x <= means[order[0]], order[0] - 1] = 1.0
    frac[x >= means[order[-1]], order[-1] - 1] = 1.0
    for lo, hi in zip(order[:-1], order[1:]):
        between = (x >= means[lo]) & (x < means[hi])  # a voxel at a class mean is that class alone
        w = (x[between] - means[lo]) / max(means[hi] - means[lo], 1e-12)
        frac[between, hi - 1] = w
        frac[between, lo - 1] = 1.0 - w
    out[m] = frac
    return out


def dice(labels_a: np.ndarray, labels_b: np.ndarray) -> dict[str, float]:
    """Dice overlap of GM and of WM between two segmentations.

    Parameters
    ----------
    labels_a, labels_b
        Labels of :func:`segment_tissues`.

    Returns
    -------
    dict of str to float
        ``gm`` and ``wm``: 1 where the anatomy is kept voxel by voxel; NaN for a tissue neither has.

    Examples
    --------
    >>> a = np.zeros((4, 4, 4), np.uint8)
    >>> a[:2], a[2:] = 2, 3
    >>> dice(a, a)
    {'gm': 1.0, 'wm': 1.0}
    """
    out = {}
    for t in ("gm", "wm"):
        a, b = labels_a == CLASSES[t], labels_b == CLASSES[t]
        n = a.sum() + b.sum()
        out[t] = float(2 * (a & b).sum() / n) if n else float("nan")
    return out


def tissue_volumes(labels: np.ndarray, voxel_volume: float = 1.0) -> dict[str, float]:
    """The volume of each tissue of a segmentation (``csf``, ``gm``, ``wm``), in units of ``voxel_volume``."""
    return {name: float((labels == k).sum()) * voxel_volume for name, k in CLASSES.items()}


def ravd(labels_input: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    """Relative absolute volume difference of GM and WM between two segmentations.

    Parameters
    ----------
    labels_input, labels_pred
        Labels of :func:`segment_tissues` of the input and of the prediction.

    Returns
    -------
    dict of str to float
        ``gm`` and ``wm``: ``|V_p - V_i| / V_i`` (0: the volumes kept); NaN for a tissue the
        input lacks.
    """
    return relative_volume_difference(tissue_volumes(labels_pred), tissue_volumes(labels_input))


def ssim_psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """SSIM and PSNR of a prediction against the truth, inside a mask.

    Parameters
    ----------
    pred
        The prediction.
    truth
        The truth, on the same grid (the same subject seen by the target site).
    mask
        The brain mask.

    Returns
    -------
    tuple of float
        SSIM (scikit-image's SSIM map, Gaussian window of sigma 1.5, averaged over the mask) and
        PSNR in dB (on the truth's range inside the mask; infinite for a perfect prediction).
    """
    from skimage.metrics import structural_similarity

    m = np.asarray(mask, bool)
    data_range = float(truth[m].max() - truth[m].min())
    _, smap = structural_similarity(
        truth.astype(np.float64),
        pred.astype(np.float64),
        data_range=data_range,
        full=True,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    mse = float(((pred[m] - truth[m]) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)
    return float(smap[m].mean()), psnr


def metrics_from_files(
    *,
    input_path,
    prediction_path,
    target_path,
    input_mask_path=None,
    target_mask_path=None,
    truth_path=None,
    modality: str = "T1w",
) -> dict:
    """Every metric of this module from NIfTI files (``mrharmony structural metrics``).

    Parameters
    ----------
    input_path
        The input image.
    prediction_path
        The harmonized image, on the input's grid.
    target_path
        The target image.
    input_mask_path, target_mask_path
        Brain masks (default: :func:`brain_mask` of the input and of the target).
    truth_path
        The truth, on the input's grid (for SSIM and PSNR).
    modality
        The images' modality (for the tissue segmentations).

    Returns
    -------
    dict of str to float
        ``nwd_ip``, ``nwd_tp``, ``ravd_gm``, ``ravd_wm``, ``dice_gm``, ``dice_wm`` and, with a
        truth, ``ssim`` and ``psnr_db``.

    Raises
    ------
    InputError
        A file that cannot be read or is on the wrong grid, an empty mask, a target with the
        input's intensity distribution, an image with fewer than three intensity levels in the
        brain, or a truth too small for SSIM: one sentence naming the file.
    """
    from mrharmony.data.structural import read_structural_image
    from mrharmony.errors import InputError

    def load(path, ref_shape=None, what="image"):
        return np.asarray(read_structural_image(path, what=what, shape=ref_shape)[0], np.float64)

    i = load(input_path)
    p = load(prediction_path, i.shape)
    t = load(target_path)
    truth = load(truth_path, i.shape) if truth_path else None
    if truth is not None and min(i.shape) < 11:  # the Gaussian window of ssim_psnr (sigma 1.5) spans 11 voxels
        raise InputError(f"has shape {i.shape}; SSIM needs at least 11 voxels along each axis.", truth_path)
    mi = load(input_mask_path, i.shape, "mask") > 0 if input_mask_path else brain_mask(i)
    mt = load(target_mask_path, t.shape, "mask") > 0 if target_mask_path else brain_mask(t)
    for m, path in ((mi, input_mask_path or input_path), (mt, target_mask_path or target_path)):
        if not m.any():
            raise InputError("gives an empty brain mask.", path)
    try:
        nwd_ip, nwd_tp = nwd(i, p, t, input_mask=mi, target_mask=mt)
    except ValueError as exc:  # the one error of nwd: input and target alike, e.g. the same file twice
        raise InputError(
            f"has the same intensity distribution in its brain mask as the input image {input_path}, "
            "so nWD is undefined; give an image of the target site.",
            target_path,
        ) from exc
    out = {"nwd_ip": nwd_ip, "nwd_tp": nwd_tp}
    for img, path in ((i, input_path), (p, prediction_path)):  # three tissue classes need three levels
        if np.unique(img[mi]).size < 3:
            raise InputError(
                "has fewer than three intensity levels inside the brain mask, so its tissues cannot be segmented.", path
            )
    li, lp = segment_tissues(i, mi, modality=modality), segment_tissues(p, mi, modality=modality)
    r, d = ravd(li, lp), dice(li, lp)
    out.update({"ravd_gm": r["gm"], "ravd_wm": r["wm"], "dice_gm": d["gm"], "dice_wm": d["wm"]})
    if truth is not None:
        s, q = ssim_psnr(p, truth, mi)
        out.update({"ssim": s, "psnr_db": q})
    return out


def period2_power(change: np.ndarray, mask: np.ndarray, *, reach: int = 4) -> float:
    """Energy of the coherent 2-voxel pattern of an image's change.

    In each 2 x 2 block of every slice (the blocks a 2D squeeze makes), the three Haar details
    (alternating along the first axis, the second, and both), each averaged over ``reach`` x
    ``reach`` neighbouring blocks, so that noise, whose details change sign from block to block,
    averages out while a texture repeating every 2 voxels stays.

    Parameters
    ----------
    change
        An image's change, output minus input (zero outside ``mask`` is assumed).
    mask
        The brain mask.
    reach
        The neighbouring blocks averaged along each axis of a slice.

    Returns
    -------
    float
        The mean of the averaged details' squares over the blocks inside the mask, summed over
        the three details.

    Raises
    ------
    ValueError
        An empty mask, or one that holds no whole 2 x 2 block.
    """
    from scipy import ndimage

    m = np.asarray(mask, bool)
    if not m.any():
        raise ValueError("an empty mask has no texture to measure")
    x, y = (n - n % 2 for n in m.shape[:2])
    d = np.where(m, np.asarray(change, np.float64), 0.0)[:x, :y]
    a, b, c, e = d[0::2, 0::2], d[1::2, 0::2], d[0::2, 1::2], d[1::2, 1::2]
    mm = m[:x, :y]
    inside = mm[0::2, 0::2] & mm[1::2, 0::2] & mm[0::2, 1::2] & mm[1::2, 1::2]
    if not inside.any():
        raise ValueError("the mask holds no whole 2 x 2 block")
    energy = 0.0
    for detail in ((a - b + c - e) / 4, (a + b - c - e) / 4, (a - b - c + e) / 4):
        coherent = ndimage.uniform_filter(detail, size=(reach, reach, 1), mode="constant")
        energy += float((coherent[inside] ** 2).mean())
    return energy


def texture_ratio(prediction: np.ndarray, image: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """How much 2-voxel texture a method's change adds, relative to the real difference.

    Parameters
    ----------
    prediction
        The harmonized image.
    image
        The input image.
    truth
        The truth (the same subject seen by the target site).
    mask
        The brain mask.

    Returns
    -------
    float
        :func:`period2_power` of ``prediction - image`` over that of ``truth - image`` (1: as
        much coherent 2-voxel pattern as the real difference between the two sites' images has;
        above 1: a texture the method added).
    """
    return period2_power(prediction - image, mask) / max(period2_power(truth - image, mask), 1e-30)


#: the image's appearance and the structure it keeps of its input
APPEARANCE = ("nwd_ip", "nwd_tp", "ravd_gm", "ravd_wm", "dice_gm", "dice_wm", "ssim", "psnr_db")
#: what a study measures, against the same person's image at the target site (module docstring)
AGREEMENT = (
    "target_vd_gm",
    "target_vd_wm",
    "target_dice_gm",
    "target_dice_wm",
    "truth_vd_gm",
    "truth_vd_wm",
    "gm_ml",
    "wm_ml",
    "csf_ml",
)
METRICS = APPEARANCE + AGREEMENT
#: the row of the subject's own image on the target site
TRUTH_ROW = "truth"
#: the row of the subject's second session on the target site: the floor of every error
RESCAN_ROW = "rescan"


def relative_volume_difference(volumes: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """``|V - V_ref| / V_ref`` of GM and WM.

    Parameters
    ----------
    volumes, reference
        Tissue volumes (:func:`tissue_volumes`, or from tissue fractions).

    Returns
    -------
    dict of str to float
        ``gm`` and ``wm``; NaN for a tissue the reference lacks.
    """
    return {
        t: abs(volumes[t] - reference[t]) / reference[t] if reference[t] > 0 else float("nan") for t in ("gm", "wm")
    }


def measured_volumes(
    img: np.ndarray, labels: np.ndarray, mask: np.ndarray, voxel_volume: float = 1.0
) -> dict[str, float]:
    """The tissue volumes a study measures of an image: its partial volumes (:func:`partial_volumes`)
    summed inside the mask, in units of ``voxel_volume``."""
    return fraction_volumes(partial_volumes(img, labels, mask), mask, voxel_volume)


def volume_change(
    before: np.ndarray, after: np.ndarray, mask: np.ndarray, *, modality: str = "T1w"
) -> dict[str, float]:
    """After minus before, each tissue's volume (voxels; :func:`measured_volumes`) of two images of one person."""
    v = [measured_volumes(img, segment_tissues(img, mask, modality=modality), mask) for img in (before, after)]
    return {t: v[1][t] - v[0][t] for t in CLASSES}


def fraction_volumes(tissue: np.ndarray, mask: np.ndarray, voxel_volume: float = 1.0) -> dict[str, float]:
    """The tissue volumes of CSF, GM and WM fractions (X, Y, Z, 3) inside a mask, in units of ``voxel_volume``."""
    m = np.asarray(mask, bool)
    return {name: float(tissue[..., k - 1][m].sum()) * voxel_volume for name, k in CLASSES.items()}


def agreement(
    labels: np.ndarray,
    target_labels: np.ndarray,
    *,
    volumes: dict[str, float],
    target_volumes: dict[str, float],
    truth_volumes: dict[str, float] | None = None,
) -> dict[str, float]:
    """What a study measures of a prediction, against the same person's image at the target site
    (:data:`AGREEMENT`).

    Parameters
    ----------
    labels, target_labels
        The segmentations of the prediction and of the target site's image (:func:`segment_tissues`).
    volumes, target_volumes
        Their tissue volumes in millilitres (from :func:`partial_volumes`: :func:`measured_volumes`).
    truth_volumes
        The true tissue volumes in millilitres (:func:`fraction_volumes`), if known.

    Returns
    -------
    dict of str to float
        The keys of :data:`AGREEMENT` (the ``truth_vd`` ones NaN without ``truth_volumes``).
    """
    v = volumes
    vd, d = relative_volume_difference(v, target_volumes), dice(target_labels, labels)
    tv = relative_volume_difference(v, truth_volumes) if truth_volumes else {"gm": float("nan"), "wm": float("nan")}
    return {
        "target_vd_gm": vd["gm"],
        "target_vd_wm": vd["wm"],
        "target_dice_gm": d["gm"],
        "target_dice_wm": d["wm"],
        "truth_vd_gm": tv["gm"],
        "truth_vd_wm": tv["wm"],
        "gm_ml": v["gm"],
        "wm_ml": v["wm"],
        "csf_ml": v["csf"],
    }


def summarize(rows: list[dict], extra_metrics=()) -> list[dict]:
    """Each metric per modality, group and method, in the rows' method order.

    Parameters
    ----------
    rows
        The rows of an evaluation (:func:`mrharmony.structural.evaluate.score_pairs`).
    extra_metrics
        Further keys to summarize where a method's rows have them (such as a round-trip error).

    Returns
    -------
    list of dict
        Per (modality, group, method): ``n_pairs``, ``n_subjects`` and, for each metric ``k``,
        its mean over the test subjects of each subject's mean over its site pairs (``k``), a 95%
        bootstrap interval over subjects (``k_ci95``) and the standard deviation over site pairs
        (``k_sd``).
    """
    from mrharmony.stats import mean_ci

    out = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for mod in dict.fromkeys(r.get("modality", "T1w") for r in rows):
        for g in sorted({r["group"] for r in rows}):
            for m in methods:
                sel = [r for r in rows if r["group"] == g and r["method"] == m and r.get("modality", "T1w") == mod]
                if not sel:
                    continue
                subjects = list(dict.fromkeys(r["subject"] for r in sel))
                row = {"modality": mod, "group": g, "method": m, "n_pairs": len(sel), "n_subjects": len(subjects)}
                for k in (*METRICS, *extra_metrics):
                    if all(k in r for r in sel):
                        v = np.array([r[k] for r in sel], float)
                        by_subject = [float(np.mean([r[k] for r in sel if r["subject"] == s])) for s in subjects]
                        ci = mean_ci(by_subject)
                        row[k], row[f"{k}_ci95"], row[f"{k}_sd"] = ci["mean"], ci["ci95"], float(np.std(v))
                out.append(row)
    return out


def paired_tests(rows: list[dict], *, reference: str, metrics=("ssim", "nwd_tp")) -> list[dict]:
    """Paired Wilcoxon signed-rank tests of one method against every other, over the test subjects.

    Each subject's value is its mean over the site pairs of the group that both methods were
    scored on. The subjects are paired here; the tests are :func:`mrharmony.stats.paired_test`
    and :func:`mrharmony.stats.bonferroni`, those of the dMRI wing.

    Parameters
    ----------
    rows
        The rows of an evaluation.
    reference
        The method compared to every other (the truth's and the rescan's rows aside).
    metrics
        The metrics tested.

    Returns
    -------
    list of dict
        Per modality, group, method and metric: ``n``, ``median_difference`` (reference minus
        method), ``p`` and ``p_bonferroni`` (over every test of the table).
    """
    from mrharmony.stats import bonferroni, paired_test

    tests = []

    def key(r):
        return r["subject"], r["input_site"], r["target_site"]

    for mod, group in sorted({(r["modality"], r["group"]) for r in rows}):
        sel = [r for r in rows if r["group"] == group and r["modality"] == mod]
        ref = {key(r): r for r in sel if r["method"] == reference}
        for method in dict.fromkeys(r["method"] for r in sel):
            if method in (reference, TRUTH_ROW, RESCAN_ROW) or not ref:
                continue
            other = {key(r): r for r in sel if r["method"] == method}
            pairs = sorted(set(ref) & set(other))
            subjects = list(dict.fromkeys(k[0] for k in pairs))
            for m in metrics:
                a, b = (
                    [float(np.mean([side[k][m] for k in pairs if k[0] == s])) for s in subjects]
                    for side in (ref, other)
                )
                t = paired_test(a, b)
                tests.append(
                    {
                        "modality": mod,
                        "group": group,
                        "method": method,
                        "metric": m,
                        "n": t["n"],
                        "median_difference": t["median_difference"],
                        "p": t["p"],
                    }
                )
    return bonferroni(tests)


def markdown_table(summary: list[dict]) -> str:
    """The summary as Markdown tables (volume differences in percent).

    Parameters
    ----------
    summary
        The result of :func:`summarize`.

    Returns
    -------
    str
        The appearance table (:data:`APPEARANCE`) and, where the summary has them, the table of
        what studies measure (:data:`AGREEMENT`): one row per summary row, each metric's mean
        over the test subjects with its 95% bootstrap interval over them, or, with fewer than
        ``MIN_INTERVAL_SUBJECTS`` (:mod:`mrharmony.stats`) test subjects, ± the standard
        deviation over their site pairs.
    """
    appearance = [
        ("nwd_ip", "nWD(i,p) (1 ideal)", 1.0, 3),
        ("nwd_tp", "nWD(t,p) (0 ideal)", 1.0, 3),
        ("ravd_gm", "rAVD GM %", 100.0, 1),
        ("ravd_wm", "rAVD WM %", 100.0, 1),
        ("dice_gm", "Dice GM", 1.0, 3),
        ("dice_wm", "Dice WM", 1.0, 3),
        ("ssim", "SSIM vs truth", 1.0, 3),
        ("psnr_db", "PSNR vs truth (dB)", 1.0, 1),
    ]
    if any("texture_p2" in r for r in summary):
        appearance.append(("texture_p2", "2-voxel texture (truth 1)", 1.0, 2))
    measured = [
        ("gm_ml", "GM mL", 1.0, 1),
        ("wm_ml", "WM mL", 1.0, 1),
        ("target_vd_gm", "GM vol. diff. to target site %", 100.0, 1),
        ("target_vd_wm", "WM vol. diff. to target site %", 100.0, 1),
        ("target_dice_gm", "Dice GM with target site", 1.0, 3),
        ("target_dice_wm", "Dice WM with target site", 1.0, 3),
        ("truth_vd_gm", "GM vol. diff. to true fractions %", 100.0, 1),
        ("truth_vd_wm", "WM vol. diff. to true fractions %", 100.0, 1),
    ]
    out = "Appearance, and the structure kept of the input (rAVD and Dice against the input's segmentation):\n\n"
    out += _table(summary, appearance)
    if any("target_vd_gm" in r for r in summary):
        out += "\nWhat a study measures, against the same person's image at the target site:\n\n"
        out += _table(summary, measured)
    return out


def _table(summary: list[dict], cols: list[tuple[str, str, float, int]]) -> str:
    from mrharmony.stats import MIN_INTERVAL_SUBJECTS

    multi = len({r["modality"] for r in summary}) > 1
    head = ["modality"] * multi + ["pairs", "method", "subjects", "site pairs"] + [c[1] for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def cell(r, k, scale, d):
        if k not in r or not np.isfinite(r[k]):
            return "-"
        if r.get("n_subjects", 1) >= MIN_INTERVAL_SUBJECTS and f"{k}_ci95" in r:
            lo, hi = r[f"{k}_ci95"]
            return f"{r[k] * scale:.{d}f} [{lo * scale:.{d}f}, {hi * scale:.{d}f}]"
        return f"{r[k] * scale:.{d}f} ± {r[k + '_sd'] * scale:.{d}f}"

    for r in summary:
        first = [r["modality"]] * multi + [r["group"], r["method"], str(r.get("n_subjects", "")), str(r["n_pairs"])]
        lines.append("| " + " | ".join(first + [cell(r, *c[:1], *c[2:]) for c in cols]) + " |")
    return "\n".join(lines) + "\n"
