"""Evaluating structural harmonizers on the held-out subjects of a structural dataset:
``mrharmony structural evaluate``, and the core of the structural benchmarks.

Every harmonizer (an :class:`~mrharmony.structural.harmonizer.ImageHarmonizer`: a trained HAIL
or IHF-Harmony model, or an intensity baseline) harmonizes each test subject's image from each
site to each other site, per modality; the one target image of a site is the one-shot reference
subject's image on it (never a test subject). Each (subject, input site, target site, method)
is one row of :data:`~mrharmony.structural.metrics.METRICS` (nWD, rAVD and Dice of the tissue
segmentations against the input's, SSIM / PSNR against the test subject's own image on the
target site, the truth), its ``group`` ``seen`` when both sites were training sites, else
``unseen``. Every row holds ``texture_p2``, the power of its change to the input at the 2-voxel
period over the truth's (:func:`~mrharmony.structural.metrics.texture_ratio`; the truth's row is
1). An invertible method's rows also hold ``roundtrip``: the relative error of the
input restored from its prediction. The row ``truth`` scores the truth itself.

The subjects are those of the trained models' run (their ``split``: ``test`` subjects, the
first ``validation`` subject as the reference), whose training sites are the seen ones; all
trained models must share them. Without a trained model the first subject of the dataset is
the reference, the others are the test subjects and the sites of role ``train`` are the seen
ones; ``split`` overrides the subjects in both cases.

:func:`evaluate_structural` writes, through :func:`mrharmony.io.staged_output_dir`:

* ``rows.csv``: one row per subject, site pair, modality and method;
* ``table.md``: each metric per modality, group and method: its mean over the test subjects
  (a subject's value is its mean over the group's site pairs) with a 95% bootstrap interval over
  subjects (with one test subject, ± the standard deviation over its site pairs);
* ``evaluation.json``: the dataset, the methods, subjects and sites, the machine, the summary and
  the paired Wilcoxon tests over subjects (Bonferroni-corrected) of the reference method against
  every other on SSIM and nWD(t,p).

Examples
--------
>>> ev = evaluate_structural("structural-demo", "eval-hail",
...                          methods=["runs/hail", "none", "nyul"])           # doctest: +SKIP
>>> print(ev.table())                                                        # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError
from mrharmony.structural.harmonizer import ImageHarmonizer, TrainedImageHarmonizer
from mrharmony.structural.metrics import (
    RESCAN_ROW,
    TRUTH_ROW,
    agreement,
    dice,
    fraction_volumes,
    markdown_table,
    measured_volumes,
    nwd,
    paired_tests,
    ravd,
    segment_tissues,
    ssim_psnr,
    summarize,
    texture_ratio,
)
from mrharmony.structural.registry import INTENSITY_METHODS, intensity_harmonizer

#: the methods that can be given by name (the intensity baselines); anything else is a model path
BASELINES = INTENSITY_METHODS
ROUNDTRIP = "roundtrip"
#: every row's power at the 2-voxel period of its change to the input, over the truth's
#: (:func:`~mrharmony.structural.metrics.texture_ratio`)
TEXTURE = "texture_p2"


@dataclass
class StructuralEvaluation:
    """The result of :func:`compare_harmonizers` (and :func:`evaluate_structural`).

    Attributes
    ----------
    rows : list of dict
        One per (subject, modality, input site, target site, method), the truth's row included
        (:func:`score_pairs`).
    summary : list of dict
        Each metric per modality, group and method (:func:`~mrharmony.structural.metrics.summarize`).
    tests : list of dict
        The paired tests of ``reference`` against every other method
        (:func:`~mrharmony.structural.metrics.paired_tests`).
    reference : str
        The method the tests compare to every other.
    info : dict
        Subjects, sites, methods and timing, for ``evaluation.json``.
    """

    rows: list[dict]
    summary: list[dict]
    tests: list[dict]
    reference: str
    info: dict = field(default_factory=dict)

    def table(self) -> str:
        """The summary as a Markdown table (:func:`~mrharmony.structural.metrics.markdown_table`).

        Returns
        -------
        str
        """
        return markdown_table(self.summary)

    def write(self, folder: str | os.PathLike, *, info: dict | None = None) -> Path:
        """Write ``table.md``, ``rows.csv`` and ``evaluation.json`` into a folder.

        Parameters
        ----------
        folder
            An existing folder.
        info
            What ``evaluation.json`` records first (default: the evaluation's own ``info``), then
            the machine, the summary and the tests.

        Returns
        -------
        pathlib.Path
            ``folder``.
        """
        from mrharmony.io import write_text

        folder = Path(folder)
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in self.rows for k in r)))
        w.writeheader()
        w.writerows(self.rows)
        write_text(folder / "rows.csv", buf.getvalue())
        write_text(folder / "table.md", self.table())
        cores = _cores()
        write_text(
            folder / "evaluation.json",
            json.dumps(
                {
                    **(self.info if info is None else info),
                    "machine": f"{platform.machine()}, {cores} cores, CPU",
                    "summary": self.summary,
                    "wilcoxon": self.tests,
                },
                indent=2,
            )
            + "\n",
        )
        return folder


def evaluate_structural(
    dataset,
    out: str | os.PathLike,
    *,
    methods,
    modalities: Sequence[str] | None = None,
    split: Mapping[str, Sequence[str]] | None = None,
    reference: str | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    jobs: int = 1,
    force: bool = False,
    quiet: bool = False,
) -> StructuralEvaluation:
    """Evaluate harmonizers on a structural dataset and write the results into a new folder (see
    the module docstring; ``mrharmony structural evaluate``).

    Parameters
    ----------
    dataset
        A structural dataset folder (``structural.yaml``) or a loaded one.
    out
        The output folder, built under a temporary name and moved into place.
    methods
        Trained models (run directories or ``model.pt``), baseline names (:data:`BASELINES`) and
        :class:`ImageHarmonizer` objects, in the order of the table's rows; or a mapping from row
        names to them.
    modalities
        The modalities to score (default: those of the dataset that a trained model was trained
        on; every modality of the dataset without trained models).
    split
        ``{"test": [...], "validation": [reference subject, ...]}`` instead of the models'.
    reference
        The method the paired tests compare to every other (default: the first trained model,
        else the first method).
    pairs
        The (input site, target site) pairs to score (default: every ordered pair).
    jobs
        Processes that score the subjects and modalities side by side (each with its share of
        PyTorch's threads; at most the CPU cores); the rows are those of one process, in the same
        order, to float rounding (the networks' sums may be split otherwise).
    force
        Replace an existing, non-empty ``out``.
    quiet
        No progress output.

    Returns
    -------
    StructuralEvaluation

    Raises
    ------
    InputError
        An existing non-empty ``out`` without ``force``, a method that is neither a saved model
        nor a baseline, two methods of one name, trained models of different splits, an unknown
        modality, site or reference method: one sentence. A failed call leaves nothing behind.
    """
    from mrharmony.io import staged_output_dir

    with staged_output_dir(out, force=force) as tmp:
        ev = compare_harmonizers(
            dataset,
            methods,
            modalities=modalities,
            split=split,
            reference=reference,
            pairs=pairs,
            jobs=jobs,
            quiet=quiet,
        )
        ev.write(tmp, info=relative_info(ev.info, Path(out)))
    return ev


def relative_info(info: dict, folder: Path) -> dict:
    """An evaluation's ``info`` with its paths relative to the folder of ``evaluation.json``.

    Parameters
    ----------
    info
        :attr:`StructuralEvaluation.info`.
    folder
        Where ``evaluation.json`` is written.

    Returns
    -------
    dict
        ``info`` with the dataset and the model files named relative to ``folder``, so that a
        moved folder of results still finds them (:func:`resolved_info` reads them back).
    """
    from mrharmony.config import relative_path

    return {
        **info,
        "dataset": relative_path(info["dataset"], folder),
        "methods": {m: relative_path(o, folder) if os.path.isabs(o) else o for m, o in info["methods"].items()},
    }


def resolved_info(info: dict, folder: Path) -> dict:
    """The inverse of :func:`relative_info`.

    Parameters
    ----------
    info
        The ``info`` read from ``evaluation.json``.
    folder
        The folder of ``evaluation.json``.

    Returns
    -------
    dict
        ``info`` with the dataset and the model files' paths made absolute.
    """

    def resolved(p: str) -> str:
        return str((Path(folder) / p).resolve())

    return {
        **info,
        "dataset": resolved(info["dataset"]),
        "methods": {m: resolved(o) if os.sep in o or o.endswith(".pt") else o for m, o in info["methods"].items()},
    }


def compare_harmonizers(
    dataset,
    methods,
    *,
    modalities: Sequence[str] | None = None,
    split: Mapping[str, Sequence[str]] | None = None,
    reference: str | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    jobs: int = 1,
    quiet: bool = False,
) -> StructuralEvaluation:
    """What :func:`evaluate_structural` computes, without writing it.

    Parameters
    ----------
    dataset, methods, modalities, split, reference, pairs, jobs, quiet
        As for :func:`evaluate_structural`.

    Returns
    -------
    StructuralEvaluation

    Raises
    ------
    InputError
        As :func:`evaluate_structural` does, but writes nothing.
    """
    from mrharmony.data.structural import (
        STRUCTURAL_FILE,
        StructuralDataset,
        load_structural,
    )

    ds = dataset if isinstance(dataset, StructuralDataset) else load_structural(dataset)
    source = ds.root / STRUCTURAL_FILE
    hs = image_harmonizers(methods)
    trained = [h for h in hs if isinstance(h, TrainedImageHarmonizer)]
    subjects, reference_subject, seen = _subjects_and_sites(ds, trained, split, source)
    if modalities is None:
        modalities = [m for m in ds.modalities if not trained or any(h.applies_to(m) for h in trained)]
    for m in modalities:
        if m not in ds.modalities:
            raise InputError(f"has no modality {m!r} (it has {', '.join(ds.modalities)}).", source)
    for i, j in pairs or ():
        for site in (i, j):
            if site not in ds.site_names:
                raise InputError(f"has no site {site!r}, which a pair to score names.", source)
        if i == j:
            raise InputError(f"the pair ({i}, {j}) harmonizes a site to itself; name two sites.")
    names = [h.name for h in hs]
    if reference is None:
        reference = (trained or hs)[0].name
    elif reference not in names:
        raise InputError(f"the reference method {reference!r} is not among the methods ({', '.join(names)}).")
    if jobs < 1:
        raise InputError(f"the number of processes (--jobs) must be at least 1, not {jobs}.")
    t0 = time.perf_counter()
    common = {"reference_subject": reference_subject, "seen_sites": seen, "pairs": pairs}
    tasks = [(modality, subject) for modality in modalities for subject in subjects]
    jobs = min(jobs, len(tasks), _cores())
    if jobs > 1:
        rows = _score_in_processes(ds, hs, tasks, jobs, common, quiet=quiet)
    else:
        rows = [
            r
            for modality in modalities
            for r in score_pairs(ds, hs, subjects=subjects, modality=modality, quiet=quiet, **common)
        ]
    seconds = time.perf_counter() - t0
    extra = (TEXTURE,) + ((ROUNDTRIP,) if any(h.invertible for h in hs) else ())
    info = {
        "dataset": str(ds.root),
        "methods": {h.name: _origin(h) for h in hs},
        "modalities": list(modalities),
        "reference": reference,
        "test_subjects": list(subjects),
        "one_shot_reference_subject": reference_subject,
        "training_sites": list(seen),
        "unseen_sites": [s for s in ds.site_names if s not in seen],
        "evaluation_seconds": round(seconds, 1),
    }
    roundtrip = [r[ROUNDTRIP] for r in rows if ROUNDTRIP in r]
    if roundtrip:
        info["roundtrip_relative_error"] = {"max": max(roundtrip), "median": float(np.median(roundtrip))}
    return StructuralEvaluation(
        rows=rows,
        summary=summarize(rows, extra_metrics=extra),
        tests=paired_tests(rows, reference=reference),
        reference=reference,
        info=info,
    )


def image_harmonizers(methods) -> list[ImageHarmonizer]:
    """The harmonizers that ``methods`` name (see :func:`evaluate_structural`).

    Parameters
    ----------
    methods
        As for :func:`evaluate_structural`.

    Returns
    -------
    list of ImageHarmonizer
        With unique names: two trained models of one method are told apart by their run
        directories.

    Raises
    ------
    InputError
        No method, one that is neither a saved model nor a baseline, or two of one name.
    """
    from mrharmony.structural.loading import load_image_harmonizer

    named = methods.items() if isinstance(methods, Mapping) else [(None, m) for m in methods]
    hs: list[ImageHarmonizer] = []
    for name, spec in named:
        if isinstance(spec, ImageHarmonizer):
            h = spec
        elif isinstance(spec, str) and spec in BASELINES:
            h = intensity_harmonizer(spec)
        else:
            path = Path(spec)
            if not path.exists():
                raise InputError(f"is neither a saved model nor a baseline ({', '.join(BASELINES)}).", path)
            h = load_image_harmonizer(path)
        if name is not None:
            h.name = str(name)
        hs.append(h)
    if not hs:
        raise InputError("name at least one method to evaluate (a trained model or a baseline).")
    names = [h.name for h in hs]
    for h in hs:
        if names.count(h.name) > 1 and isinstance(h, TrainedImageHarmonizer) and h.model_file is not None:
            f = h.model_file
            h.name = f"{h.name} ({f.parent.name if f.name == 'model.pt' else f.stem})"
    names = [h.name for h in hs]
    dup = [n for n in names if names.count(n) > 1]
    if dup:
        raise InputError(f"two methods are named {dup[0]!r}; give them different names.")
    return hs


def score_pairs(
    dataset,
    harmonizers: Sequence[ImageHarmonizer],
    *,
    subjects: Sequence[str],
    reference_subject: str,
    seen_sites: Sequence[str],
    modality: str = "T1w",
    pairs: Sequence[tuple[str, str]] | None = None,
    quiet: bool = False,
) -> list[dict]:
    """The rows of one modality (see the module docstring).

    Parameters
    ----------
    dataset
        A loaded structural dataset.
    harmonizers
        The harmonizers; those that do not apply to ``modality`` are left out.
    subjects
        The test subjects.
    reference_subject
        The one-shot reference subject, whose image on the target site is the target image.
    seen_sites
        The training sites (a pair of two of them is ``seen``, any other ``unseen``).
    modality
        The modality scored.
    pairs
        The (input site, target site) pairs to score (default: every ordered pair).
    quiet
        No progress output.

    Returns
    -------
    list of dict
        One row per test subject, pair and harmonizer, and the truth's row: the metrics of
        :mod:`mrharmony.structural.metrics`, ``texture_p2`` and, for an invertible method,
        ``roundtrip``.
    """
    from mrharmony.progress import Progress

    hs = [h for h in harmonizers if h.applies_to(modality)]
    seen = set(seen_sites)
    pairs = (
        list(dict.fromkeys(tuple(p) for p in pairs))
        if pairs  # each pair once
        else [(i, j) for i in dataset.site_names for j in dataset.site_names if i != j]
    )
    sites = list(dict.fromkeys(s for p in pairs for s in p))
    rows: list[dict] = []
    bar = Progress(
        total=len(subjects) * len(pairs), unit="pairs", desc=f"structural evaluation ({modality})", quiet=quiet
    )
    from mrharmony.data.images import voxel_size

    target_images = {j: dataset.load_image(reference_subject, j, modality) for j in sites}
    targets = {j: v[0] for j, v in target_images.items()}
    target_voxels = {j: voxel_size(v[1]) for j, v in target_images.items()}
    ref_mask = dataset.load_mask(reference_subject, targets[sites[0]])
    for subject in subjects:
        loaded = {j: dataset.load_image(subject, j, modality) for j in sites}
        imgs = {j: v[0] for j, v in loaded.items()}
        voxel_ml = float(abs(np.linalg.det(loaded[sites[0]][1][:3, :3]))) / 1000.0
        mask = dataset.load_mask(subject, imgs[sites[0]])
        labels = {j: segment_tissues(imgs[j], mask, modality=modality) for j in sites}
        volumes = {j: measured_volumes(imgs[j], labels[j], mask, voxel_ml) for j in sites}
        truth_volumes = _truth_volumes(dataset, subject, mask, voxel_ml)
        rescans = {j: dataset.load_rescan(subject, j, modality)[0] for j in sites} if dataset.rescans else {}
        # the second session is measured inside its own brain mask (the head moved between sessions)
        rescan_mask = dataset.load_rescan_mask(subject) if rescans else mask
        rescan_labels = {j: segment_tissues(r, rescan_mask, modality=modality) for j, r in rescans.items()}
        rescan_volumes = {j: measured_volumes(r, rescan_labels[j], rescan_mask, voxel_ml) for j, r in rescans.items()}
        for i, j in pairs:
            x, t, truth = imgs[i], targets[j], imgs[j]
            group = "seen" if i in seen and j in seen else "unseen"
            preds = {TRUTH_ROW: (truth, {})}
            if rescans:
                preds[RESCAN_ROW] = (rescans[j], {})
            for h in hs:
                result = h.transform(
                    x,
                    target=t,
                    mask=mask,
                    target_mask=ref_mask,
                    voxel_mm=voxel_size(loaded[i][1]),
                    target_voxel_mm=target_voxels[j],
                )
                extra = {}
                if h.invertible:
                    back = h.restore(result)  # from what the result records, as from its files
                    extra[ROUNDTRIP] = float(np.linalg.norm(back - x) / np.linalg.norm(x))
                preds[h.name] = (result.image, extra)
            for name, (p, extra) in preds.items():
                ip, tp = nwd(x, p, t, input_mask=mask, target_mask=ref_mask)
                # the truth's labels are those of the target site's image; an unchanged input keeps its own
                lab = (
                    labels[j]
                    if name == TRUTH_ROW
                    else rescan_labels[j]
                    if name == RESCAN_ROW
                    else labels[i]
                    if np.array_equal(p, x)
                    else segment_tissues(p, mask, modality=modality)
                )
                r, d = ravd(labels[i], lab), dice(labels[i], lab)
                s, q = ssim_psnr(p, truth, mask) if name != TRUTH_ROW else (float("nan"), float("nan"))
                extra = {TEXTURE: texture_ratio(p, x, truth, mask), **extra}
                rows.append(
                    {
                        "subject": subject,
                        "modality": modality,
                        "input_site": i,
                        "target_site": j,
                        "group": group,
                        "method": name,
                        "nwd_ip": ip,
                        "nwd_tp": tp,
                        "ravd_gm": r["gm"],
                        "ravd_wm": r["wm"],
                        "dice_gm": d["gm"],
                        "dice_wm": d["wm"],
                        "ssim": s,
                        "psnr_db": q,
                        **agreement(
                            lab,
                            labels[j],
                            volumes=volumes[j]
                            if name == TRUTH_ROW
                            else rescan_volumes[j]
                            if name == RESCAN_ROW
                            else measured_volumes(p, lab, mask, voxel_ml),
                            target_volumes=volumes[j],
                            truth_volumes=truth_volumes,
                        ),
                        **extra,
                    }
                )
            bar.update(1)
    bar.close()
    return rows


def _truth_volumes(dataset, subject: str, mask: np.ndarray, voxel_ml: float) -> dict[str, float] | None:
    """A simulated subject's true tissue volumes in millilitres (None without a truth file)."""
    from mrharmony.data.structural import read_tissue

    path = dataset.truth_path(subject)
    return fraction_volumes(read_tissue(path, mask.shape), mask, voxel_ml) if path.is_file() else None


#: what each process of :func:`_score_in_processes` scores with: the dataset and the harmonizers
_WORKER: dict = {}


def _score_in_processes(ds, hs, tasks: list[tuple[str, str]], jobs: int, common: dict, *, quiet: bool) -> list[dict]:
    """:func:`score_pairs` of each (modality, subject) of ``tasks`` in ``jobs`` new processes
    (spawned, not forked: PyTorch's thread pool does not survive a fork), each with its share of
    PyTorch's threads; the rows in the order of ``tasks``, as one process gives them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from mrharmony.progress import Progress

    threads = max(1, torch.get_num_threads() // jobs)
    bar = Progress(
        total=len(tasks), unit="subject-modalities", desc=f"structural evaluation ({jobs} processes)", quiet=quiet
    )
    parts = []
    try:
        with ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(ds, hs, threads)
        ) as pool:
            for part in pool.map(_score_task, [(m, s, common) for m, s in tasks]):
                parts.append(part)
                bar.update(1)
    finally:
        bar.close()
    return [r for part in parts for r in part]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _start_worker(ds, hs, threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)  # numpy's BLAS as well, for the life of the process
    _WORKER.update(ds=ds, hs=hs)


def _score_task(task) -> list[dict]:
    modality, subject, common = task
    return score_pairs(_WORKER["ds"], _WORKER["hs"], subjects=[subject], modality=modality, quiet=True, **common)


def _subjects_and_sites(ds, trained: list[TrainedImageHarmonizer], split, source):
    """(test subjects, one-shot reference subject, seen sites)."""
    seen = ds.train_sites
    run_split = None
    if trained:
        first = trained[0]
        for h in trained[1:]:
            if h.split != first.split or h.training_sites != first.training_sites:
                raise InputError(
                    f"was trained on another split or other sites than {first.model_file}; "
                    "evaluate models of one split together.",
                    h.model_file,
                )
        seen = first.training_sites or seen
        run_split = first.split
        for site in seen:
            if site not in ds.site_names:
                raise InputError(
                    f"was trained on site {site!r}, which {source} does not have ({', '.join(ds.site_names)}).",
                    first.model_file,
                )
    split = split if split is not None else run_split
    if split is None and trained:
        raise InputError("records no subject split; give the test and validation subjects.", trained[0].model_file)
    if split is None:
        if len(ds.subjects) < 2:
            raise InputError("needs two subjects at least: a one-shot reference and a test subject.", source)
        return list(ds.subjects[1:]), ds.subjects[0], list(seen)
    subjects, validation = list(split.get("test") or []), list(split.get("validation") or [])
    if not subjects or not validation:
        raise InputError("the split needs test subjects and a validation subject (the one-shot reference).")
    for s in [*subjects, validation[0]]:
        if s not in ds.subjects:
            raise InputError(f"has no subject {s!r}, which the split names.", source)
    if validation[0] in subjects:
        raise InputError(f"the one-shot reference subject {validation[0]!r} is also a test subject.")
    return subjects, validation[0], list(seen)


def _origin(h: ImageHarmonizer) -> str:
    if isinstance(h, TrainedImageHarmonizer) and h.model_file is not None:
        return str(h.model_file.resolve())
    return h.method
