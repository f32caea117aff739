"""What the structural benchmarks (``benchmarks/hail.py``, ``benchmarks/flow.py``) share: their
data, their runs and their result files."""

from __future__ import annotations

from pathlib import Path


def add_jobs(ap) -> None:
    """Add the ``--jobs`` option of the structural benchmarks (processes that score the subjects)
    to the argument parser ``ap``."""
    ap.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="processes that score subjects and modalities side by side (default 2, the "
        "benchmark machine's cores; the rows do not depend on it, to float rounding)",
    )


def structural_data(out: Path, preset: str, seed: int):
    """The structural data of a benchmark.

    Parameters
    ----------
    out : Path
        The benchmark's output folder; the data are ``out/data``.
    preset, seed
        The simulator's preset and seed.

    Returns
    -------
    (Path, StructuralDataset)
        ``out/data``, simulated (T1w, T2w, FLAIR) unless it is there already, and the dataset.
    """
    from mrharmony.data.structural import load_structural
    from mrharmony.simulate.structural import simulate_structural

    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "structural.yaml").is_file():
        simulate_structural(data, preset=preset, seed=seed, quiet=True)
    return data, load_structural(data)


def evaluation_data(out: Path, preset: str, seed: int, ds, model, extra: int):
    """The dataset and subject split a benchmark scores on.

    Parameters
    ----------
    out : Path
        The benchmark's output folder.
    preset, seed
        The simulator's preset and seed of the training data ``ds``.
    ds : StructuralDataset
        The training data.
    model
        A trained harmonizer whose split (test and validation subjects) is kept.
    extra : int
        More simulated people to score, never seen in training.

    Returns
    -------
    (StructuralDataset, dict or None)
        ``(ds, None)``: the training data with the models' own held-out test subjects; or, with
        ``extra`` > 0, ``out/data-plus-<extra>``: the same simulation with ``extra`` more subjects
        (its first subjects are the training data's, image for image, as the simulator seeds each
        subject by its index), and the split that scores the models' test subjects and the new
        people.

    Raises
    ------
    SystemExit
        When ``out/data-plus-<extra>`` does not repeat the training data's subjects.
    """
    import numpy as np

    from mrharmony.data.structural import load_structural
    from mrharmony.simulate.structural import simulate_structural

    if extra <= 0:
        return ds, None
    n = len(ds.subjects)
    path = out / f"data-plus-{extra}"
    if not (path / "structural.yaml").is_file():
        simulate_structural(path, preset=preset, seed=seed, n_subjects=n + extra, quiet=True)
    more = load_structural(path)
    first = (ds.subjects[0], ds.site_names[0])
    if more.subjects[:n] != ds.subjects or not np.array_equal(ds.load_image(*first)[0], more.load_image(*first)[0]):
        raise SystemExit(f"{path} does not repeat the training data's subjects; remove it and run the benchmark again.")
    return more, {"test": [*model.split["test"], *more.subjects[n:]], "validation": list(model.split["validation"])}


def train_or_resume(cls, config: dict, run: Path):
    """The trained harmonizer of class ``cls`` (a TrainedImageHarmonizer) in ``run``.

    Parameters
    ----------
    cls : type
        The harmonizer's class.
    config : dict
        The run config of a new run (written beside the run as ``<run>.yaml``).
    run : Path
        The run's folder: a finished run is loaded as it is, an interrupted one resumed, else a
        new one trained.

    Returns
    -------
    The trained harmonizer.
    """
    import yaml

    from mrharmony.structural.training import train_harmonizer

    run = Path(run)
    if (run / "model.pt").is_file():
        return cls.load(run)
    if (run / "checkpoints" / "last.pt").is_file():
        h = train_harmonizer(cls, None, run, resume=True, quiet=True)
    else:
        path = run.with_name(run.name + ".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        h = train_harmonizer(cls, path, run, quiet=True, force=True)
    if h is None:
        raise SystemExit(f"{run} stopped before its end; run the benchmark again to resume it.")
    return h


def write_results(out: Path, evaluation, args, *, training_sites, unseen_sites, **extra) -> list[dict]:
    """Write a structural benchmark's results and print them.

    Parameters
    ----------
    out : Path
        The folder of ``table.md``, ``rows.csv`` and ``evaluation.json``.
    evaluation
        The evaluation (``compare_harmonizers``).
    args : argparse.Namespace
        The run's settings: ``preset``, ``training_preset``, ``seed``.
    training_sites, unseen_sites
        The sites.
    **extra
        More of the run to record (e.g. training seconds).

    Returns
    -------
    list of dict
        The paired tests of the evaluation's reference method against every other.

    Notes
    -----
    The record holds the settings, the evaluation's subjects, the sites, ``extra``, the
    evaluation's time and, where a row is invertible, its round-trip error; the evaluation adds
    the machine, the summary and the tests. Prints the table, the tests and the round trip.
    """
    info = evaluation.info
    record = {
        "preset": args.preset,
        "training_preset": args.training_preset,
        "seed": args.seed,
        "test_subjects": info["test_subjects"],
        "one_shot_reference_subject": info["one_shot_reference_subject"],
        "training_sites": list(training_sites),
        "unseen_sites": list(unseen_sites),
        **extra,
        "evaluation_seconds": info["evaluation_seconds"],
    }
    if "roundtrip_relative_error" in info:
        record["roundtrip_relative_error"] = info["roundtrip_relative_error"]
    evaluation.write(out, info=record)
    print(evaluation.table())
    for t in evaluation.tests:
        print(
            f"{t['modality']:5s} {t['group']:7s} {evaluation.reference} vs {t['method']:22s} {t['metric']:7s} "
            f"median diff {t['median_difference']:+.4f}  p_bonf {t['p_bonferroni']:.2g}"
        )
    if "roundtrip_relative_error" in record:
        print(
            "round trip of the invertible rows (input restored from its harmonized image): max relative error "
            f"{record['roundtrip_relative_error']['max']:.2e}"
        )
    return evaluation.tests
