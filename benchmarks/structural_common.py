"""What the structural benchmarks (hail.py, flow.py) share: their data, their runs and their result files."""

from __future__ import annotations

from pathlib import Path


def add_jobs(ap) -> None:
    """The ``--jobs`` option of the structural benchmarks: processes that score the subjects."""
    ap.add_argument("--jobs", type=int, default=2,
                    help="processes that score subjects and modalities side by side (default 2, the "
                         "benchmark machine's cores; the rows do not depend on it, to float rounding)")


def structural_data(out: Path, preset: str, seed: int):
    """``out/data``, simulated (T1w, T2w, FLAIR) unless it is there already: (folder, dataset)."""
    from mrharmony.data.structural import load_structural
    from mrharmony.simulate.structural import simulate_structural

    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "structural.yaml").is_file():
        simulate_structural(data, preset=preset, seed=seed, quiet=True)
    return data, load_structural(data)


def evaluation_data(out: Path, preset: str, seed: int, ds, model, extra: int):
    """The dataset and subject split a benchmark scores on: ``(ds, None)``, the training data with
    the models' own held-out test subjects; or, with ``extra`` > 0, ``out/data-plus-<extra>``: the
    same simulation with ``extra`` more subjects (its first subjects are the training data's,
    image for image, as the simulator seeds each subject by its index), scored on the models' test
    subjects and the ``extra`` new people, none of whom the models saw. ``model``: a trained
    harmonizer whose split (test and validation subjects) is kept."""
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
    if more.subjects[:n] != ds.subjects or not np.array_equal(*(d.load_image(*first)[0] for d in (ds, more))):
        raise SystemExit(f"{path} does not repeat the training data's subjects; remove it and run the benchmark again.")
    return more, {"test": [*model.split["test"], *more.subjects[n:]], "validation": list(model.split["validation"])}


def train_or_resume(cls, config: dict, run: Path):
    """The trained harmonizer of class ``cls`` (a TrainedImageHarmonizer) in ``run``: a finished run
    as it is, an interrupted one resumed, else a new one trained from the ``config`` mapping
    (written beside the run as ``<run>.yaml``)."""
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
    """table.md, rows.csv and evaluation.json in ``out``: the run's settings (``args``: preset, training
    preset, seed), the evaluation's subjects, the sites, ``extra`` (e.g. training seconds), the
    evaluation's time and, where a row is invertible, its round-trip error; then the machine, the
    summary and the paired tests of the evaluation's reference method against every other. Prints
    the table, the tests and the round trip."""
    info = evaluation.info
    record = {"preset": args.preset, "training_preset": args.training_preset, "seed": args.seed,
              "test_subjects": info["test_subjects"], "one_shot_reference_subject": info["one_shot_reference_subject"],
              "training_sites": list(training_sites), "unseen_sites": list(unseen_sites), **extra,
              "evaluation_seconds": info["evaluation_seconds"]}
    if "roundtrip_relative_error" in info:
        record["roundtrip_relative_error"] = info["roundtrip_relative_error"]
    evaluation.write(out, info=record)
    print(evaluation.table())
    for t in evaluation.tests:
        print(f"{t['modality']:5s} {t['group']:7s} {evaluation.reference} vs {t['method']:22s} {t['metric']:7s} "
              f"median diff {t['median_difference']:+.4f}  p_bonf {t['p_bonferroni']:.2g}")
    if "roundtrip_relative_error" in record:
        print("round trip of the invertible rows (input restored from its harmonized image): max relative error "
              f"{record['roundtrip_relative_error']['max']:.2e}")
    return evaluation.tests
