"""``mrharmony dmri evaluate RUN_DIR [RUN_DIR ...]``: how good is each method on the same test data?

* The MSP paper's metric: the MSE in normalized SH space of each test patch, every row and the
  truth put on one fixed scale per target platform (the raw coefficients through the platform's
  training statistics: nothing standardized per scan, so a perfect prediction scores 0) (the central
  ``eval_size``^3 input voxels of the patch, ``r eval_size``^3 voxels for a 2x target, so
  every method is scored on the same voxels whatever its output size), mean (std) per target;
  one row per method, one column per target, like Table 1. Predictions are made on whole
  volumes (tiled), which for valid convolutions equals patch-by-patch prediction.
* Paired two-sided Wilcoxon signed-rank tests between every pair of methods on the same test
  patches, Bonferroni-corrected over every test of the table.
* The split is the runs' own (they must share dataset and split): by patch (the paper's) or by
  held-out subject, and the table says which.
* For held-out subjects, whole-volume errors inside the target's mask (and the input's, brought
  to the target grid, where every method predicts) against the raw truth: the SH errors per order
  and order-balanced (:func:`sh_errors`), and the absolute FA and MD differences. Every row's FA
  and MD, the reference's included, come through one path (raw SH coefficients, their signal on
  the target scan's gradient table, a DTI fit), so a perfect prediction scores 0
  (:class:`TargetReference`). On a dataset made by ``mrharmony simulate`` two floors sit beside
  the methods, through the same path: ``rescan``, a second session of the subject on the target
  platform (new noise, bias field and small misregistration; MUSHAC judged harmonization by
  whether cross-scanner differences fall to this level), and ``oracle``, the noiseless target.

A "none" row (the input's SH coefficients, at their own scale, taken as the target's: no
harmonization) is the reference every method must beat; it is added unless a saved ``none``
run is among the runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError


@dataclass
class Evaluation:
    """What :func:`evaluate` found: the patch table, its tests and the whole-volume errors.

    Attributes
    ----------
    split : str
        ``patch`` (the paper's split) or ``subject`` (held-out subjects).
    n_patches : int
        Test patches scored.
    eval_size : int
        The edge (input voxels) of the central part of each patch that is scored.
    targets, methods : list of str
        The columns and the rows of the table.
    parameters : dict
        Per method, the trained parameters (None for methods without a network).
    patch_errors : dict
        Method -> target -> the per-patch MSE (N,).
    tests : dict
        Target -> the paired tests between every pair of methods (:func:`mrharmony.stats.paired_tests`,
        Bonferroni over the whole table).
    volume_errors : list of dict
        One row per (method, held-out subject, target): :func:`score_row`.
    test_subjects : list of str
        The held-out subjects (none for the split by patch).
    volume_voxels : int or None
        FA and MD errors on this many seeded voxels per subject and target (None: all).
    references : dict
        The held-out subjects' :class:`TargetReference` (``keep_references``; not saved).
    """

    split: str
    n_patches: int
    eval_size: int
    targets: list[str]
    methods: list[str]
    parameters: dict[str, int | None]
    patch_errors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # method -> target -> (N,)
    tests: dict[str, list[dict]] = field(default_factory=dict)  # target -> pairwise tests
    volume_errors: list[dict] = field(default_factory=list)  # one row per (method, subject, target)
    test_subjects: list[str] = field(default_factory=list)
    volume_voxels: int | None = None  # FA / MD on this many seeded voxels per subject and target (None: all)
    #: the held-out subjects' target scans as read for scoring (``keep_references``; not saved)
    references: dict = field(default_factory=dict, repr=False, compare=False)

    def summary(self) -> dict:
        """The evaluation as plain values (``evaluation.json``): the patch MSE as mean and std per
        method and target, the tests and the whole-volume rows."""
        return {
            "split": self.split,
            "n_patches": self.n_patches,
            "eval_size": self.eval_size,
            "volume_voxels": self.volume_voxels,
            "targets": self.targets,
            "methods": self.methods,
            "parameters": self.parameters,
            "test_subjects": self.test_subjects,
            "patch_mse": {
                m: {t: {"mean": float(e.mean()), "std": float(e.std())} for t, e in per.items()}
                for m, per in self.patch_errors.items()
            },
            "tests": self.tests,
            "volume_errors": self.volume_errors,
        }


def evaluate(
    runs: Sequence[str | os.PathLike],
    *,
    eval_size: int = 5,
    max_patches: int | None = 20000,
    seed: int = 0,
    baseline: bool = True,
    volume_metrics: bool = True,
    first_stages: bool = False,
    floors: bool = True,
    volume_voxels: int | None = None,
    keep_references: bool = False,
    quiet: bool = False,
) -> Evaluation:
    """Evaluate saved harmonizers on their common test split (``mrharmony dmri evaluate``; see the
    module docstring).

    Parameters
    ----------
    runs
        Run directories (or saved models) of harmonizers trained on one dataset and split.
    eval_size
        The edge (input voxels) of the central part of each test patch that is scored.
    max_patches
        Score a seeded sample of at most this many test patches (None: all).
    seed
        The seed of that sample.
    baseline
        Add the ``none`` row (no harmonization) unless a saved ``none`` run is among ``runs``.
    volume_metrics
        Score whole volumes of the held-out subjects (SH, FA and MD errors).
    first_stages
        Networks that build on single networks (MSP) also get the row of their own first stage
        (``msp_stage1``: the first-stage networks as MSP's training left them).
    floors
        Add the ``rescan`` and ``oracle`` rows on a simulated dataset (a benchmark that scores
        several seeds on one split needs them once).
    volume_voxels
        FA and MD errors on that many seeded brain voxels per subject and target, the same for
        every row (default: every voxel).
    keep_references
        Keep each held-out subject's :class:`TargetReference` (its target scans, noiseless and
        rescan renders as read here) for a report to reuse.
    quiet
        No progress output.

    Returns
    -------
    Evaluation

    Raises
    ------
    InputError
        No run, a run that cannot be loaded or was trained with other data settings than the
        first: one sentence naming the run.

    Examples
    --------
    >>> ev = evaluate(["runs/diqt", "runs/rish"], volume_voxels=10000)    # doctest: +SKIP
    >>> ev.summary()["patch_mse"]["rish"]                                  # doctest: +SKIP
    """
    from mrharmony.dmri.config import DataConfig, make_splits
    from mrharmony.dmri.features.normalization import ChannelStats, FeatureScaling, platform_stats
    from mrharmony.dmri.patches import PatchSampler
    from mrharmony.progress import Progress
    from mrharmony.registration import finer_affine
    from mrharmony.stats import paired_tests

    rows = table_rows_of(runs, first_stages=first_stages, baseline=baseline)
    names, hs, identity, data, ds = rows.names, rows.harmonizers, rows.identity, rows.data, rows.dataset
    targets, ratios = rows.targets, rows.ratios
    # the raw truth at each target platform's fixed scale: predictions are put on the same scale
    scale = {t: ChannelStats.from_dict(identity.reference["target_stats"][t]) for t in targets}
    truth = PatchSampler.from_dataset(
        ds,
        subjects=data.subjects,
        targets=targets,
        size=data.patch_size,
        target_sizes={t: eval_size * r for t, r in ratios.items()},
        scaling=FeatureScaling(
            "platform",
            {
                **scale,
                ds.input_platform.name: platform_stats(ds, ds.input_platform.name, list(data.subjects or ds.subjects)),
            },
        ),
    )
    splits = make_splits(truth, DataConfig(**data.model_dump()))
    test = splits.test
    if max_patches and len(test) > max_patches:
        test = np.sort(np.random.default_rng(seed).choice(test, max_patches, replace=False))
    subj_of = truth.subject_index()
    subjects_needed = sorted(set(subj_of[test].tolist()))
    params: dict[str, int | None] = {}
    for n, h in zip(names, hs):
        count = getattr(h, "parameter_count", None)
        params[n] = None if count is None else (params.get(n) or 0) + count  # a row's networks together
    ev = Evaluation(
        split=data.split,
        n_patches=len(test),
        eval_size=eval_size,
        targets=targets,
        methods=list(dict.fromkeys(names)),
        parameters=params,
        test_subjects=splits.test_subjects,
        volume_voxels=volume_voxels,
    )
    offsets = np.searchsorted(subj_of, np.arange(len(truth.subjects)))
    progress = Progress(total=len(hs) * len(subjects_needed), unit="volumes", desc="evaluate", quiet=quiet)
    from mrharmony.dmri.features.prepare import load_features

    # per harmonizer (several single networks of one method share a row name, one per target)
    mine = [[t for t in h.targets if t in targets] if h.predicts_sh else [] for h in hs]
    errors = [{t: np.empty(len(test), np.float64) for t in ts} for ts in mine]
    for s in subjects_needed:  # each subject's volumes are read once, whatever the number of methods
        subject = truth.subjects[s]
        f = load_features(ds, subject, ds.input_platform.name)
        variants = {"none": f}  # the input as each row takes it (denoised or not)
        sel = np.flatnonzero(subj_of[test] == s)
        # patches are cut and scored one subject at a time: memory stays that of one subject
        true = truth.target_batch(test[sel])
        reference = (
            TargetReference(ds, subject, max_voxels=volume_voxels)
            if volume_metrics and subject in splits.test_subjects
            else None
        )
        if keep_references and reference is not None:
            ev.references[subject] = reference
        for i, (name, h) in enumerate(zip(names, hs)):
            if h.denoise not in variants:
                variants[h.denoise] = h.input_features(ds, subject)
            fh = variants[h.denoise]
            if not h.predicts_sh:  # DTI-map methods: whole-volume rows only
                if reference is not None:
                    ev.volume_errors.extend(volume_errors(h, name, fh, None, reference))
                progress.update(1)
                continue
            pred = h.predict(fh)
            on_scale = {t: scale[t].apply(h.target_coefficients(pred[t], t), h.target_mask(f.mask, t)) for t in mine[i]}
            cutter = PatchSampler(
                [f.data],
                [f.affine],
                [f.mask],
                {t: [on_scale[t]] for t in mine[i]},
                {t: [finer_affine(f.affine, ratios[t])] for t in mine[i]},
                size=data.patch_size,
                target_sizes={t: eval_size * ratios[t] for t in mine[i]},
            )
            cut = cutter.target_batch(test[sel] - offsets[s])
            for t in mine[i]:
                errors[i][t][sel] = ((cut[t] - true[t]) ** 2).reshape(len(sel), -1).mean(axis=1)
            if reference is not None:
                ev.volume_errors.extend(volume_errors(h, name, fh, pred, reference))
            progress.update(1)
        if floors and reference is not None and reference.simulated:
            ev.volume_errors.extend(floor_errors(identity, f, reference))
    for name, per in zip(names, errors):
        if per:
            ev.patch_errors.setdefault(name, {}).update(per)
    order = {name: i for i, name in enumerate(dict.fromkeys(names + ["rescan", "oracle"]))}
    ev.volume_errors.sort(key=lambda r: order[r["method"]])  # rows by method, then subject
    progress.close()
    per_target = {t: {m: e[t] for m, e in ev.patch_errors.items() if t in e} for t in targets}
    n_tests = sum(len(e) * (len(e) - 1) // 2 for e in per_target.values())
    for t, errs in per_target.items():
        ev.tests[t] = paired_tests(errs, n_comparisons=n_tests) if len(errs) > 1 else []
    return ev


@dataclass
class TableRows:
    """The rows of an evaluation (:func:`table_rows_of`).

    Attributes
    ----------
    names : list of str
        The row label of each harmonizer (first stages and ``none`` included).
    harmonizers : list
        The harmonizers, in the order of ``names``.
    identity : Harmonizer
        The ``none`` harmonizer: the input taken as the target, on the runs' platform scale.
    data : DataConfig
        The runs' shared data configuration.
    dataset : TravelingHeads
        Their dataset.
    targets : list of str
        The targets any run predicts.
    ratios : dict of str to int
        Their voxel ratios.
    """

    names: list[str]
    harmonizers: list
    identity: object
    data: object
    dataset: object
    targets: list[str]
    ratios: dict[str, int]


def table_rows_of(runs: Sequence[str | os.PathLike], *, first_stages: bool = False, baseline: bool = True) -> TableRows:
    """Load saved runs as the rows of one table.

    Parameters
    ----------
    runs, first_stages, baseline
        As for :func:`evaluate`.

    Returns
    -------
    TableRows

    Raises
    ------
    InputError
        No run, a run that cannot be loaded or was trained with other data settings than the
        first.
    """
    from mrharmony.data import load_dataset
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.dmri.statistical import IdentityHarmonizer

    if not runs:
        raise InputError("name at least one run directory to evaluate.")
    hs = [load_harmonizer(r) for r in runs]
    data = shared_data_config(hs, runs)
    ds = load_dataset(data.dataset, check_data=False, subjects=data.subjects)
    targets = [p.name for p in ds.target_platforms if any(p.name in h.targets for h in hs)]
    ratios = {t: ds.voxel_ratio(t) for t in targets}
    names = method_labels(hs, runs)
    if first_stages:  # each first stage right after its network
        for i in reversed(range(len(hs))):
            stage = hs[i].first_stage() if hasattr(hs[i], "first_stage") else None
            if stage is not None:
                hs.insert(i + 1, stage)
                names.insert(i + 1, stage.name)
    ref = {"sh": hs[0].reference["sh"]}  # the platforms' scale and gradient tables, as the runs learned them
    for key in ("target_stats", "target_gradients", "voxel_sizes"):
        ref[key] = {t: v for h in hs for t, v in (h.reference.get(key) or {}).items()}
    identity = IdentityHarmonizer(targets=targets, ratios=ratios, reference=ref)
    if baseline and "none" not in names:  # no harmonization, unless a saved "none" run is among the runs
        hs.append(identity)
        names.append("none")
    return TableRows(names, hs, identity, data, ds, targets, ratios)


def shared_data_config(hs, runs):
    """The data configuration that trained runs share.

    Parameters
    ----------
    hs
        The runs' harmonizers.
    runs
        The runs, named in errors.

    Returns
    -------
    DataConfig
        Their shared data settings (targets, validation and scaling settings aside:
        :func:`~mrharmony.dmri.config.comparable_data`).

    Raises
    ------
    InputError
        A run that is not a trained run with a data configuration, or one that differs from the
        first, naming it.
    """
    from mrharmony.dmri.config import DataConfig, comparable_data

    datas = []
    for h, r in zip(hs, runs):
        meta = getattr(h, "meta", None)
        if meta is None:
            raise InputError("is not a trained run with a data configuration.", r)
        datas.append(comparable_data(meta["data"]))
    for d, r in zip(datas[1:], runs[1:]):
        if d != datas[0]:
            diff = sorted(k for k in d if d[k] != datas[0].get(k))
            raise InputError(
                f"was trained with other data settings than {runs[0]} ({', '.join(diff)}); "
                "methods are compared on one dataset and split.",
                r,
            )
    return DataConfig(**datas[0])


def method_labels(hs, runs) -> list[str]:
    """The row labels of harmonizers.

    Parameters
    ----------
    hs
        The harmonizers.
    runs
        Their run directories.

    Returns
    -------
    list of str
        Each harmonizer's name; single networks of one method for different targets share a row
        (as in Table 1); a second run of a method for the same target is labelled by its run.
    """
    out, covered = [], set()
    for h, r in zip(hs, runs):
        label = h.name
        if any((label, t) in covered for t in h.targets):
            label = f"{h.name} ({Path(r).name})"
        covered.update((label, t) for t in h.targets)
        out.append(label)
    return out


class TargetReference:
    """One held-out subject's target scans as every row is scored against them, read once.

    Everything here is at the coefficients' own scale (the raw truth): the target scan's SH
    features as ``prepare`` fitted them, and on a simulated dataset the subject's targets rendered
    again without noise (the ``oracle`` row) and as a second session (the ``rescan`` row), fitted
    the same way; nothing is re-standardized. Their FA and MD come through the path of every
    prediction (the coefficients' signal on the scan's gradient table, a DTI fit: :meth:`maps`), so
    a prediction equal to the target's coefficients scores 0, and the SH fit's own bias on FA / MD
    (FA and MD read low on white matter; measured in docs/history.md) is on both sides.

    Parameters
    ----------
    ds
        The traveling-heads dataset (prepared).
    subject
        The held-out subject.
    max_voxels
        Compare FA and MD on at most this many seeded voxels per target (None: every voxel;
        :meth:`sample`).
    """

    def __init__(self, ds, subject: str, *, max_voxels: int | None = None):
        self.ds, self.subject = ds, subject
        self.max_voxels = max_voxels
        self.scans: dict = {}
        self.cache: dict = {}
        self.noiseless: dict = {}
        self.rescans: dict = {}
        self.samples: dict = {}
        self.wm: dict = {}
        self.named: dict = {}

    def sample(self, target: str, mask: np.ndarray) -> np.ndarray:
        """The voxels of a mask where FA and MD are compared.

        Parameters
        ----------
        target
            The target platform.
        mask
            Candidate voxels on the target's grid.

        Returns
        -------
        numpy.ndarray
            Boolean: all of ``mask``, or ``max_voxels`` of its voxels drawn by a generator seeded
            with the subject and target, the same for every row (an unbiased estimate of the
            whole-volume mean at a fraction of the DTI fits' cost).
        """
        import hashlib
        import zlib

        key = (target, hashlib.sha1(np.packbits(mask)).hexdigest())
        if key not in self.samples:
            idx = np.flatnonzero(mask)
            if self.max_voxels is None or idx.size <= self.max_voxels:
                self.samples[key] = np.asarray(mask, bool)
            else:
                rng = np.random.default_rng(zlib.crc32(f"{self.subject}/{target}".encode()))
                keep = np.zeros(mask.size, bool)
                keep[rng.choice(idx, self.max_voxels, replace=False)] = True
                self.samples[key] = keep.reshape(mask.shape)
        return self.samples[key]

    @property
    def simulated(self) -> bool:
        return (self.ds.root / "simulation.yaml").is_file()

    def scan(self, target: str):
        """The subject's scan on a target platform, read once.

        Returns
        -------
        tuple
            Its :class:`~mrharmony.dmri.features.prepare.ScanFeatures` at their own scale and its
            gradient table (bvals, bvecs).
        """
        if target not in self.scans:
            from mrharmony.dmri.features.prepare import load_features

            self.scans[target] = (
                load_features(self.ds, self.subject, target, normalized=False),
                self.ds.scan(self.subject, target).gradients(),
            )
        return self.scans[target]

    def features(self, kind: str, target: str) -> np.ndarray:
        """Raw SH coefficients of the target scan or of a floor.

        Parameters
        ----------
        kind
            ``scan`` (the target scan), ``noiseless`` (the target rendered without noise) or
            ``rescan`` (a second session).
        target
            The target platform.

        Returns
        -------
        numpy.ndarray
            (X, Y, Z, C) on the target's grid.
        """
        return {
            "scan": lambda: self.scan(target)[0].data,
            "noiseless": lambda: self.noiseless_features(target),
            "rescan": lambda: self.rescan_features(target),
        }[kind]()

    def maps(self, kind: str, target: str, where: np.ndarray | None = None) -> tuple:
        """DTI maps of :meth:`features`: their signal on the scan's gradient table, a DTI fit.

        Parameters
        ----------
        kind, target
            As for :meth:`features`.
        where
            The voxels to fit (default: the scan's brain); the maps are cached per voxels.

        Returns
        -------
        tuple of numpy.ndarray
            FA, MD and DEC FA.
        """
        import hashlib

        from mrharmony.dmri.features.dti import dti_from_sh

        tf, gradients = self.scan(target)
        where = tf.mask if where is None else where
        key = (kind, target, hashlib.sha1(np.packbits(where)).hexdigest())
        if key not in self.cache:
            self.cache[key] = dti_from_sh(self.features(kind, target), *gradients, tf.sh, where)
        return self.cache[key]

    def has_kurtosis(self, target: str) -> bool:
        """Whether the target's gradient table has the two shells a DKI fit needs."""
        from mrharmony.dmri.features.dti import has_kurtosis

        return has_kurtosis(self.scan(target)[1][0])

    def kurtosis(self, kind: str, target: str, where: np.ndarray) -> dict[str, np.ndarray]:
        """DKI maps (``mk``, ``ak``, ``rk``) of :meth:`features` on the scan's gradient table, as
        :meth:`maps` gives DTI maps (cached per voxels); for targets of two shells or more."""
        import hashlib

        from mrharmony.dmri.features.dti import dki_from_sh

        tf, gradients = self.scan(target)
        key = ("dki", kind, target, hashlib.sha1(np.packbits(where)).hexdigest())
        if key not in self.cache:
            self.cache[key] = dki_from_sh(self.features(kind, target), *gradients, tf.sh, where)
        return self.cache[key]

    def dti(self, target: str, where: np.ndarray | None = None):
        """FA and MD of the target scan (:meth:`maps`)."""
        return self.maps("scan", target, where)[:2]

    def noiseless_dti(self, target: str, where: np.ndarray | None = None):
        """FA and MD of the noiseless target (:meth:`maps`)."""
        return self.maps("noiseless", target, where)[:2]

    def white_matter(self, target: str, where: np.ndarray) -> np.ndarray | None:
        """The voxels of ``where`` in the simulated subject's white matter.

        Returns
        -------
        numpy.ndarray or None
            Boolean, on the target's grid (from the simulator's truth); None for data that are
            not simulated.
        """
        if not self.simulated:
            return None
        if target not in self.wm:
            from mrharmony.simulate.truth import truth_masks

            tf, _ = self.scan(target)
            self.wm[target] = truth_masks(
                self.ds.root, self.subject, self.ds.platforms[target].voxel_size[0], tf.mask.shape, region=False
            )[1]
        return self.wm[target] & where

    #: the fewest voxels of a named region where FA and MD are compared for its regional mean to count
    MIN_REGION_VOXELS = 5

    def regions(self, target: str, where: np.ndarray) -> list[np.ndarray]:
        """The named white-matter regions of the simulated subject, restricted to ``where``.

        Returns
        -------
        list of numpy.ndarray
            Boolean masks on the target's grid of the regions of
            :data:`~mrharmony.simulate.params.WM_REGIONS` with at least ``MIN_REGION_VOXELS``
            voxels in ``where``; empty for data that are not simulated.
        """
        if not self.simulated:
            return []
        if target not in self.named:
            from mrharmony.simulate.truth import white_matter_regions

            tf, _ = self.scan(target)
            self.named[target] = white_matter_regions(
                self.ds.root, self.subject, self.ds.platforms[target].voxel_size[0], tf.mask.shape
            )
        masks = [m & where for m in self.named[target].values()]
        return [m for m in masks if m.sum() >= self.MIN_REGION_VOXELS]

    def noiseless_features(self, target: str) -> np.ndarray:
        """The target rendered again without noise, fitted as the scan was (raw coefficients)."""
        if target not in self.noiseless:
            from mrharmony.dmri.features.sh import fit_sh
            from mrharmony.simulate import render_scan

            tf, _ = self.scan(target)
            clean = render_scan(self.ds.root, self.subject, target, noise=False)
            self.noiseless[target] = fit_sh(clean.dwi, clean.bvals, clean.bvecs, tf.mask, tf.sh)
        return self.noiseless[target]

    def rescan_features(self, target: str) -> np.ndarray:
        """A second session of the subject on ``target`` (new noise, bias field and small
        misregistration), its SH features fitted inside the scan's brain mask as ``prepare`` fits
        every scan (raw coefficients)."""
        if target not in self.rescans:
            from mrharmony.dmri.features.sh import fit_sh
            from mrharmony.simulate import render_scan

            tf, _ = self.scan(target)
            again = render_scan(self.ds.root, self.subject, target, session=2)
            self.rescans[target] = fit_sh(again.dwi.astype(np.float32), again.bvals, again.bvecs, tf.mask, tf.sh)
        return self.rescans[target]


def sh_errors(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, orders: np.ndarray, energy: dict, suffix: str = ""
) -> dict:
    """SH errors of raw coefficients inside a mask, per order and order-balanced.

    Parameters
    ----------
    pred, truth
        Raw SH coefficients (X, Y, Z, C) of a row and of the truth.
    mask
        The voxels scored.
    orders
        The SH order of each coefficient (C,).
    energy
        Order -> the target scan's mean energy of that order (:func:`order_energy`): the scan's,
        not the noiseless truth's, so that an order the truth has almost none of does not blow up.
    suffix
        Added to every key.

    Returns
    -------
    dict of str to float
        ``sh_mse_l<l>``, the mean squared error of the coefficients of order l, and ``sh_rel``,
        the order-balanced relative error: the mean over orders of each order's squared error over
        its energy (order 0, which holds most of the energy, would otherwise outweigh the others).
    """
    d, t = pred[mask].astype(np.float64), truth[mask].astype(np.float64)
    out, rel = {}, []
    for l in np.unique(orders):
        sel = orders == l
        err = float(((d[:, sel] - t[:, sel]) ** 2).mean())
        out[f"sh_mse_l{int(l)}{suffix}"] = err
        rel.append(err / max(energy[int(l)], 1e-30))
    out[f"sh_rel{suffix}"] = float(np.mean(rel))
    return out


def rish_errors(
    pred: np.ndarray | None,
    truth: np.ndarray,
    scan: np.ndarray,
    mask: np.ndarray,
    sh_order_max: int,
    shells: list[float],
) -> dict[float, float | None]:
    """Relative errors of the rotation-invariant SH (RISH) features of each shell, as the MUSHAC
    evaluation (Ning et al. 2020) scored multi-shell harmonization.

    Per shell and order l, the RISH feature E_l (the sum of the squared coefficients of that order)
    of ``pred`` and ``truth`` inside ``mask``; the error of a shell is the mean over its orders of
    mean |E_l,pred - E_l,truth| / mean E_l,scan: over the target scan's energy, not the truth's, so
    that an order the noiseless truth has almost none of does not blow up (as in :func:`sh_errors`).

    Returns
    -------
    dict of float to float or None
        Per shell (its b-value): the error; None for a row without SH.
    """
    from mrharmony.dmri.features.sh import channel_groups

    if pred is None:
        return dict.fromkeys(shells)
    groups = channel_groups(truth.shape[-1], sh_order_max)
    n_orders = sh_order_max // 2 + 1
    p, t, s = (a[mask].astype(np.float64) for a in (pred, truth, scan))
    out = {}
    for k, b in enumerate(shells):
        errs = []
        for g in range(k * n_orders, (k + 1) * n_orders):
            ep, et, es = ((a[:, groups == g] ** 2).sum(1) for a in (p, t, s))
            errs.append(float(np.abs(ep - et).mean() / max(es.mean(), 1e-12)))
        out[b] = float(np.mean(errs))
    return out


def order_energy(coeffs: np.ndarray, mask: np.ndarray, orders: np.ndarray) -> dict[int, float]:
    """The mean squared coefficient of each SH order inside a mask.

    Parameters
    ----------
    coeffs
        SH coefficients (X, Y, Z, C).
    mask
        The voxels.
    orders
        The SH order of each coefficient (C,).

    Returns
    -------
    dict of int to float
    """
    c = coeffs[mask].astype(np.float64)
    return {int(l): float((c[:, orders == l] ** 2).mean()) for l in np.unique(orders)}


def volume_errors(h, name: str, scan, pred: dict | None, reference: TargetReference) -> list[dict]:
    """Whole-volume errors of one method on one held-out subject, against the raw truth.

    Scored inside the target's brain where the method predicts (:func:`scored_voxels`).

    Parameters
    ----------
    h
        The harmonizer.
    name
        Its row label.
    scan
        The subject's input features as ``h`` takes them.
    pred
        ``h``'s normalized predictions for ``scan``; None for methods of DTI maps.
    reference
        The subject's target scans.

    Returns
    -------
    list of dict
        One row per target of ``h`` (:func:`score_row`): the SH errors of its coefficients at
        the platform's scale (:func:`sh_errors`) and the mean absolute FA and MD differences,
        against the target scan and, on a simulated dataset, the noiseless target
        (``*_noiseless``).
    """
    gradients = {t: reference.scan(t)[1] for t in h.targets}
    masks, where = {}, {}
    for t in h.targets:
        masks[t], where[t] = scored_voxels(h, scan, reference, t)
    maps = h.predict_dti(scan, gradients=gradients, pred=pred, masks=where)
    kurtosis = h.predict_kurtosis(scan, gradients=gradients, masks=where)  # methods of maps (ComBat)
    raw = None if pred is None else {t: h.target_coefficients(pred[t], t, masks[t]) for t in h.targets}
    return [
        score_row(
            name, reference, t, None if raw is None else raw[t], maps[t][:2], masks[t], where[t], mk=kurtosis.get(t)
        )
        for t in h.targets
    ]


def scored_voxels(h, scan, reference: TargetReference, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Where a row is scored on a target.

    Returns
    -------
    tuple of numpy.ndarray
        The target's brain where ``h`` predicts from ``scan`` (SH errors), and the reference's
        sample of it (FA and MD; :meth:`TargetReference.sample`).
    """
    mask = reference.scan(target)[0].mask & h.target_mask(scan.mask, target)
    return mask, reference.sample(target, mask)


def score_row(
    name: str,
    reference: TargetReference,
    target: str,
    raw: np.ndarray | None,
    fa_md: tuple,
    mask: np.ndarray,
    where: np.ndarray,
    *,
    mk: np.ndarray | None = None,
) -> dict:
    """One row of :func:`volume_errors`.

    Parameters
    ----------
    name
        The row's label.
    reference
        The subject's target scans.
    target
        The target platform.
    raw
        The row's raw SH coefficients (None: it has no SH).
    fa_md
        The row's FA and MD maps.
    mask, where
        The voxels of the SH errors and of the FA and MD errors (:func:`scored_voxels`).
    mk
        A row without SH: its mean kurtosis map, where it has one (a method of maps).

    Returns
    -------
    dict
        ``method``, ``subject``, ``target``; the SH errors, ``fa_mae`` and ``md_mae`` (and the
        errors of the named regions' means on simulated data) against the target scan, the same
        with ``_noiseless`` against the noiseless target; on simulated data the row's and the
        truth's white-matter means (``fa_wm``, ``md_wm``, ``fa_wm_truth``, ``md_wm_truth``). On a
        target of two shells or more, also ``mk_mae`` (mean kurtosis of a DKI fit of the row's
        signal, where it has SH) and ``rish_rel_b<b>`` per shell (:func:`rish_errors`).
    """
    from mrharmony.dmri.features.sh import channel_orders

    tf, _ = reference.scan(target)
    orders = channel_orders(tf.data.shape[-1], tf.sh.sh_order_max)
    fa_p, md_p = fa_md
    row = {"method": name, "subject": reference.subject, "target": target}
    kinds = [("scan", "")] + ([("noiseless", "_noiseless")] if reference.simulated else [])
    energy = order_energy(reference.features("scan", target), mask, orders) if raw is not None else None
    regions = reference.regions(target, where)
    for kind, suffix in kinds:
        fa_t, md_t = reference.maps(kind, target, where)[:2]
        if raw is not None:
            row.update(sh_errors(raw, reference.features(kind, target), mask, orders, energy, suffix))
        else:
            row[f"sh_rel{suffix}"] = None
        row.update(
            {
                f"fa_mae{suffix}": float(np.abs(fa_p[where] - fa_t[where]).mean()),
                f"md_mae{suffix}": float(np.abs(md_p[where] - md_t[where]).mean()),
            }
        )
        if regions:  # as studies report regions: the error of each region's mean
            row.update(
                {
                    f"{m}_region_mae{suffix}": float(np.mean([abs(p[r].mean() - q[r].mean()) for r in regions]))
                    for m, p, q in (("fa", fa_p, fa_t), ("md", md_p, md_t))
                }
            )
    if reference.has_kurtosis(target):  # a multi-shell target: kurtosis and each shell's RISH features
        from mrharmony.data.gradients import shells_of
        from mrharmony.dmri.features.dti import dki_from_sh

        gradients = reference.scan(target)[1]
        mk_p = mk if raw is None else dki_from_sh(raw, *gradients, tf.sh, where)["mk"]
        shells = shells_of(gradients[0])[0]
        scan = reference.features("scan", target)  # the RISH errors' scale, for every kind
        for kind, suffix in kinds:
            truth = reference.features(kind, target)
            row[f"mk_mae{suffix}"] = (
                None
                if mk_p is None
                else float(np.abs(mk_p - reference.kurtosis(kind, target, where)["mk"])[where].mean())
            )
            for b, err in rish_errors(raw, truth, scan, mask, tf.sh.sh_order_max, shells).items():
                row[f"rish_rel_b{b:g}{suffix}"] = err
    wm = reference.white_matter(target, where)
    if wm is not None and wm.any():  # each person's own values: the row's and the truth's white-matter means
        fa_c, md_c = reference.maps("noiseless", target, where)[:2]
        row.update(
            {
                "fa_wm": float(fa_p[wm].mean()),
                "md_wm": float(md_p[wm].mean()),
                "fa_wm_truth": float(fa_c[wm].mean()),
                "md_wm_truth": float(md_c[wm].mean()),
            }
        )
    return row


def floor_errors(h, scan, reference: TargetReference) -> list[dict]:
    """The floors of a simulated dataset, scored as predictions on ``h``'s targets and voxels.

    Parameters
    ----------
    h
        The harmonizer whose targets and voxels are scored (the ``none`` row's).
    scan
        The subject's input features.
    reference
        The subject's target scans.

    Returns
    -------
    list of dict
        :func:`score_row` rows of ``rescan`` (a second session of the subject on the target
        platform: what harmonization can at best reach, as MUSHAC judged it) and ``oracle`` (the
        noiseless target: the target scan's own noise), per target.
    """
    rows = []
    for kind, name in (("rescan", "rescan"), ("noiseless", "oracle")):
        for t in h.targets:
            mask, where = scored_voxels(h, scan, reference, t)
            rows.append(
                score_row(
                    name, reference, t, reference.features(kind, t), reference.maps(kind, t, where)[:2], mask, where
                )
            )
    return rows
