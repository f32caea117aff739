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
    from mrharmony.data.structural import read_structural_image
    from mrharmony.errors import InputError

    def load(path, ref_shape=None, what="image"):
        return np.asarray(read_structural_image(path, what=what, shape=ref_shape)[0], np.float64)

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


METRICS = ("nwd_ip", "nwd_tp", "ravd_gm", "ravd_wm", "ssim", "psnr_db")
TRUTH_ROW = "truth"


def evaluate_structural(dataset, *, hail_run=None, methods=("none", "zscore", "whitestripe", "nyul"),
                        subjects: list[str], reference_subject: str, modality: str = "T1w",
                        quiet: bool = False) -> list[dict]:
    """Every method on every ordered pair of sites (input site, target site) of each test subject.

    The one target image of a site is ``reference_subject``'s image on it (one-shot; never a test
    subject). Each row: subject, input and target site, ``group`` (``seen``: both sites were
    training sites of the HAIL run, or of role train without one; ``unseen``: at least one was
    not), the method, and :data:`METRICS`; SSIM / PSNR are against the test subject's own image
    on the target site (the truth, used for scoring only). The row ``truth`` scores that image as
    if it were a prediction: what a perfect harmonization would get on nWD and rAVD.
    """
    from mrharmony.methods.intensity import harmonize_intensity
    from mrharmony.progress import Progress

    net = None
    seen = set(dataset.train_sites)
    if hail_run is not None:
        from mrharmony.methods.hail import harmonize, load_hail

        net, meta = load_hail(hail_run)
        seen = set(meta["training_sites"])
        methods = ("hail", *methods)
    sites = dataset.site_names
    rows: list[dict] = []
    bar = Progress(total=len(subjects) * len(sites) * (len(sites) - 1), unit="pairs", desc="structural evaluation",
                   quiet=quiet)
    ref_mask = dataset.load_mask(reference_subject, dataset.load_image(reference_subject, sites[0], modality)[0])
    targets = {j: dataset.load_image(reference_subject, j, modality)[0] for j in sites}
    for subject in subjects:
        imgs = {j: dataset.load_image(subject, j, modality)[0] for j in sites}
        mask = dataset.load_mask(subject, imgs[sites[0]])
        labels = {j: segment_tissues(imgs[j], mask) for j in sites}
        for i in sites:
            for j in sites:
                if i == j:
                    continue
                x, t, truth = imgs[i], targets[j], imgs[j]
                group = "seen" if i in seen and j in seen else "unseen"
                preds = {TRUTH_ROW: truth}
                for m in methods:
                    preds[m] = (harmonize(net, x, mask, t, ref_mask) if m == "hail"
                                else harmonize_intensity(m, x, mask, t, ref_mask))
                for m, p in preds.items():
                    ip, tp = nwd(x, p, t, input_mask=mask, target_mask=ref_mask)
                    r = ravd(labels[i], labels[j] if m == TRUTH_ROW else segment_tissues(p, mask))
                    s, q = ssim_psnr(p, truth, mask) if m != TRUTH_ROW else (float("nan"), float("nan"))
                    rows.append({"subject": subject, "input_site": i, "target_site": j, "group": group,
                                 "method": m, "nwd_ip": ip, "nwd_tp": tp, "ravd_gm": r["gm"], "ravd_wm": r["wm"],
                                 "ssim": s, "psnr_db": q})
                bar.update(1)
    bar.close()
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation of each metric per (group, method), in the rows' method order."""
    out = []
    groups = sorted({r["group"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for g in groups:
        for m in methods:
            sel = [r for r in rows if r["group"] == g and r["method"] == m]
            if not sel:
                continue
            row = {"group": g, "method": m, "n_pairs": len(sel)}
            for k in METRICS:
                v = np.array([r[k] for r in sel], float)
                row[k], row[f"{k}_sd"] = float(np.mean(v)), float(np.std(v))
            out.append(row)
    return out


def markdown_table(summary: list[dict]) -> str:
    """The summary as a Markdown table (rAVD in percent)."""
    head = ("| pairs | method | n | nWD(i,p) (1 ideal) | nWD(t,p) (0 ideal) | rAVD GM % | rAVD WM % | "
            "SSIM vs truth | PSNR vs truth (dB) |")
    lines = [head, "|" + " --- |" * 9]
    for r in summary:
        def f(k, scale=1.0, d=3):
            if not np.isfinite(r[k]):
                return "-"
            return f"{r[k] * scale:.{d}f} ± {r[k + '_sd'] * scale:.{d}f}"
        lines.append(f"| {r['group']} | {r['method']} | {r['n_pairs']} | {f('nwd_ip')} | {f('nwd_tp')} | "
                     f"{f('ravd_gm', 100, 1)} | {f('ravd_wm', 100, 1)} | {f('ssim')} | {f('psnr_db', 1, 1)} |")
    return "\n".join(lines) + "\n"
