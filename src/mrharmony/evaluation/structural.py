"""Metrics of structural harmonization (the HAIL paper's, and those our synthetic truth allows).

* ``nWD(i, p)`` and ``nWD(t, p)``: the 1-Wasserstein distance (scipy) between the brain-mask
  intensity distributions of input and prediction, and of target and prediction, each divided
  by that of input and target. A prediction that takes the target's appearance scores 1 and 0;
  one that leaves the input as it was scores 0 and 1.
* ``rAVD`` for GM and WM: ``|V_p - V_i| / V_i`` of the tissue volumes of segmentations of input
  and prediction (dipy's HMRF tissue classifier, three classes ordered by T1-weighted
  intensity: CSF, GM, WM). Harmonization should change appearance, not anatomy: 0 is ideal.
* ``SSIM`` and ``PSNR`` against the truth (the same subject seen by the target site), inside
  the brain mask (scikit-image's SSIM map averaged over the mask; PSNR on the truth's range).
"""

from __future__ import annotations

import numpy as np

CLASSES = {"csf": 1, "gm": 2, "wm": 3}


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.ravel(a), np.ravel(b)))


def nwd(input_img: np.ndarray, pred: np.ndarray, target: np.ndarray, *, input_mask: np.ndarray,
        target_mask: np.ndarray) -> tuple[float, float]:
    """(nWD(i, p), nWD(t, p)); ``pred`` lies on the input's grid and mask."""
    i, p, t = input_img[input_mask], pred[input_mask], target[target_mask]
    base = wasserstein(i, t)
    if base == 0:
        raise ValueError("input and target have the same intensity distribution: nWD is undefined")
    return wasserstein(i, p) / base, wasserstein(t, p) / base


def segment_tissues(img: np.ndarray, mask: np.ndarray, *, beta: float = 0.1, max_iter: int = 20) -> np.ndarray:
    """Labels 0 (outside), 1 CSF, 2 GM, 3 WM of a T1-weighted image inside ``mask`` (dipy HMRF)."""
    import contextlib
    import io

    from dipy.segment.tissue import TissueClassifierHMRF

    m = np.asarray(mask, bool)
    vals = img[m]
    lo, hi = np.percentile(vals, [0.5, 99.5])
    scaled = np.zeros(img.shape, np.float64)
    # into (0, 1]: the classifier takes 0 for background
    scaled[m] = 0.01 + 0.99 * np.clip((vals - lo) / max(hi - lo, 1e-12), 0, 1)
    with contextlib.redirect_stdout(io.StringIO()):  # dipy reports its iterations
        _, final, _ = TissueClassifierHMRF(verbose=False).classify(scaled, 3, beta, max_iter=max_iter)
    labels = np.asarray(final, np.uint8)
    labels[m & (labels == 0)] = 1  # (none expected) the darkest class inside the brain
    labels[~m] = 0
    return labels


def tissue_volumes(labels: np.ndarray, voxel_volume: float = 1.0) -> dict[str, float]:
    return {name: float((labels == k).sum()) * voxel_volume for name, k in CLASSES.items()}


def ravd(labels_input: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    """Relative absolute volume difference of GM and WM between two segmentations."""
    vi, vp = tissue_volumes(labels_input), tissue_volumes(labels_pred)
    return {t: abs(vp[t] - vi[t]) / vi[t] if vi[t] > 0 else float("nan") for t in ("gm", "wm")}


def ssim_psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """SSIM (mean of the SSIM map inside ``mask``) and PSNR (dB) of ``pred`` against ``truth``."""
    from skimage.metrics import structural_similarity

    m = np.asarray(mask, bool)
    data_range = float(truth[m].max() - truth[m].min())
    _, smap = structural_similarity(truth.astype(np.float64), pred.astype(np.float64), data_range=data_range,
                                    full=True, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    mse = float(((pred[m] - truth[m]) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)
    return float(smap[m].mean()), psnr


def brain_mask(img: np.ndarray) -> np.ndarray:
    """The automatic brain mask used where none is given: Otsu's threshold (scikit-image) of the
    image, its largest connected component, holes filled. Meant for skull-stripped images."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    m = img > threshold_otsu(img)
    labels, n = ndimage.label(m)
    if n > 1:
        m = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(m)


def metrics_from_files(*, input_path, prediction_path, target_path, input_mask_path=None, target_mask_path=None,
                       truth_path=None) -> dict:
    """Every metric of this module from NIfTI files (``mrharmony structural metrics``).

    The prediction (and the truth) must lie on the input's grid; masks default to
    :func:`brain_mask` of the input and of the target.
    """
    from mrharmony.data.validate import read_float32, read_image
    from mrharmony.errors import InputError

    def load(path, ref_shape=None, what="image"):
        img = read_image(path)
        data = np.asarray(read_float32(img, path), np.float64)
        if data.ndim != 3:
            raise InputError(f"is {data.ndim}D; a structural {what} must be 3D.", path)
        if ref_shape is not None and data.shape != ref_shape:
            raise InputError(f"has shape {data.shape} but the input has {ref_shape}.", path)
        if not np.all(np.isfinite(data)):
            raise InputError("has NaN or infinite values.", path)
        return data

    i = load(input_path)
    p = load(prediction_path, i.shape)
    t = load(target_path)
    mi = load(input_mask_path, i.shape, "mask") > 0 if input_mask_path else brain_mask(i)
    mt = load(target_mask_path, t.shape, "mask") > 0 if target_mask_path else brain_mask(t)
    for m, path in ((mi, input_mask_path or input_path), (mt, target_mask_path or target_path)):
        if not m.any():
            raise InputError("gives an empty brain mask.", path)
    nwd_ip, nwd_tp = nwd(i, p, t, input_mask=mi, target_mask=mt)
    out = {"nwd_ip": nwd_ip, "nwd_tp": nwd_tp}
    r = ravd(segment_tissues(i, mi), segment_tissues(p, mi))
    out.update({"ravd_gm": r["gm"], "ravd_wm": r["wm"]})
    if truth_path:
        s, q = ssim_psnr(p, load(truth_path, i.shape), mi)
        out.update({"ssim": s, "psnr_db": q})
    return out
