"""``mrharmony demo [OUT]``: the whole toolkit on synthetic data, in minutes on a CPU.

dMRI (``--only dmri``):

1. simulate the ``demo`` traveling heads (6 subjects on four platforms) and prepare their SH
   features (``data/``);
2. train, on every subject but the last (held out for testing), DIQT for each target platform
   and MSP on top of them, and fit the statistical baselines that need no extra (no
   harmonization, global and voxelwise mean/variance alignment, linear RISH);
3. evaluate them on the held-out subject: the patch table with its paired tests, whole-volume
   SH / FA / MD errors against the target scan and the noiseless target, beside the ``rescan``
   and ``oracle`` floors (``evaluation/``).

Structural (``--only structural``):

1. simulate multi-site structural MRI (T1w, T2w, FLAIR; five sites, two never seen in training;
   ``structural/``);
2. train HAIL (T1w; its U-Net variant, ``hail_unet``: the paper's model needs longer training
   than a demo has to be a fair row; its training time in ``benchmarks/hail.py`` is in
   docs/history.md) and IHF-Harmony's squeeze variant (``ihf_squeeze``, exactly invertible; all
   three modalities; the paper's flow takes much more compute per training step; both are timed
   in docs/results.md) on the training sites;
3. evaluate them with intensity baselines (none, z-score, Nyul) on a test
   subject, harmonized from a training site to another one (seen) and to a site never seen in
   training (unseen), every modality (``structural-evaluation/``).

Then one HTML report covers both (``report.html``). Every run's config is in ``configs/`` and its
directory in ``runs/``. The training budgets are small, for a demo that ends within minutes: the
benchmarks (``benchmarks/dmri.py``, ``benchmarks/hail.py``, ``benchmarks/flow.py``) train every
method of the papers and measure them. The single-network and multi-task baselines of the MSP
paper that the demo leaves out (CNN-RISH, SHResNet, CPM, HNED) train with the same configs
(``mrharmony dmri train``; examples/).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

WINGS = ("dmri", "structural")
#: the demo's networks: DIQT's epochs per target, and MSP's second stage (epochs, patches per epoch);
#: the other training settings come from the ``demo`` training preset
DIQT_TRAINING = {"epochs": 3}
MSP_TRAINING = {"epochs": 1, "patches_per_epoch": 600}
#: the statistical methods of the demo (the benchmarks have every one)
DMRI_BASELINES = ("none", "meanvar_global", "rish")
#: the structural runs of the demo: training settings on top of the ``demo`` training preset
HAIL_TRAINING = {"pretrain_epochs": 1, "epochs": 2}
IHF_TRAINING = {"batch_size": 8, "pretrain_epochs": 4, "epochs": 6}
#: the intensity baselines of the demo (WhiteStripe is in the benchmarks)
INTENSITY_BASELINES = ("none", "zscore", "nyul")


def run_demo(
    out: str | os.PathLike,
    *,
    preset: str = "demo",
    seed: int = 0,
    only: str | None = None,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Run the demo (both wings, or ``only`` one) into the new folder ``out``."""
    from mrharmony.io import staged_output_dir
    from mrharmony.report.html import build_report

    def say(text: str) -> None:
        if not quiet:
            print(f"== {text}", flush=True)

    wings = WINGS if only is None else (only,)
    out = Path(out)
    printed = []
    with staged_output_dir(out, force=force) as tmp:
        (tmp / "configs").mkdir()
        runs, ev, structural = [], None, None
        if "dmri" in wings:
            runs, ev = _dmri(tmp, preset, seed, say, quiet)
            from mrharmony.dmri.tables import markdown

            printed.append(markdown(ev))
        if "structural" in wings:
            structural = _structural(tmp, preset, seed, say, quiet)
            printed.append(structural.table())
        say("writing the report")
        build_report(runs, tmp / "report.html", evaluation=ev, structural=structural, quiet=quiet)
    print("\n".join(printed))
    print(f"report: {out / 'report.html'}")
    if "dmri" in wings:
        print(f"dMRI tables: {out / 'evaluation'} (table.md, rows.csv, evaluation.json)")
    if "structural" in wings:
        print(f"structural tables: {out / 'structural-evaluation'} (table.md, rows.csv, evaluation.json)")
    print(f"runs: {out / 'runs'}")
    return out


def _config(tmp: Path, name: str, cfg: dict) -> Path:
    path = tmp / "configs" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _dmri(tmp: Path, preset: str, seed: int, say, quiet: bool):
    """Simulate, prepare, train, fit and evaluate the dMRI wing: (runs, evaluation)."""
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.dmri.tables import write_tables
    from mrharmony.dmri.training import train
    from mrharmony.simulate import simulate

    say(f"dMRI: simulating the {preset} traveling heads")
    data = simulate(tmp / "data", preset=preset, seed=seed, quiet=quiet)
    say("dMRI: fitting SH features")
    prepare(data, quiet=quiet)
    ds = load_dataset(data, check_data=False)
    targets = [p.name for p in ds.target_platforms]
    held_out = ds.subjects[-1]
    data_cfg = {"dataset": "../data", "split": "subject", "test_subjects": [held_out], "split_seed": seed}
    train_preset = "test" if preset == "tiny" else "demo"
    statistical = list(DMRI_BASELINES)

    def run(name: str, model: dict, targets_: list[str] | None, training: dict | None = None) -> Path:
        cfg = {
            "preset": train_preset,
            "data": {**data_cfg, **({"targets": targets_} if targets_ else {})},
            "model": model,
            "training": {"seed": seed, **(training or {})},
        }
        say(f"dMRI: {'fitting' if model['method'] in statistical else 'training'} {name}")
        return train(_config(tmp, name, cfg), tmp / "runs" / name, quiet=quiet)

    tiny = preset == "tiny"
    singles = [run(f"diqt-{t}", {"method": "diqt"}, [t], None if tiny else DIQT_TRAINING) for t in targets]
    msp_training = {} if tiny else MSP_TRAINING
    runs = singles + [
        run(
            "msp",
            {"method": "msp", "first_stage_runs": [f"../runs/{p.name}" for p in singles], "alpha_end_epoch": 0.5},
            None,
            msp_training,
        )
    ]
    runs += [run(m, {"method": m}, None) for m in statistical]
    say(f"dMRI: evaluating on the held-out subject {held_out}")
    ev = evaluate(
        runs, max_patches=1000, volume_voxels=None if preset == "tiny" else 6000, keep_references=True, quiet=quiet
    )
    write_tables(ev, tmp / "evaluation")
    return runs, ev


def _structural(tmp: Path, preset: str, seed: int, say, quiet: bool):
    """Simulate, train and evaluate the structural wing: the structural evaluation."""
    from mrharmony.data.structural import load_structural
    from mrharmony.simulate.structural import simulate_structural
    from mrharmony.structural.evaluate import evaluate_structural
    from mrharmony.structural.training import train_structural

    data_preset = "tiny" if preset == "tiny" else "demo"
    say(f"structural: simulating the {data_preset} sites (T1w, T2w, FLAIR)")
    data = simulate_structural(tmp / "structural", preset=data_preset, seed=seed, quiet=quiet)
    ds = load_structural(data)
    train_preset = "test" if preset == "tiny" else "demo"
    data_cfg = {"dataset": "../structural", "n_test_subjects": 1, "n_validation_subjects": 1, "split_seed": seed}
    configs = {
        "hail": {
            "data": {**data_cfg, "modalities": ["T1w"], "crop_size": 16 if preset == "tiny" else 32},
            "model": {"method": "hail", "skips": True, "widths": [16, 32, 64]},
            "training": HAIL_TRAINING,
        },
        "ihf": {
            "data": {**data_cfg, "modalities": ["T1w", "T2w", "FLAIR"], "crop_size": 16 if preset == "tiny" else 64},
            "model": {"method": "ihf", "flow": "squeeze", "dims": 2},
            "training": IHF_TRAINING,
        },
    }
    runs = {}
    for name, cfg in configs.items():
        training = {} if preset == "tiny" else cfg["training"]
        path = _config(
            tmp,
            name,
            {
                "preset": train_preset,
                "data": cfg["data"],
                "model": cfg["model"],
                "training": {"seed": seed, **training},
            },
        )
        say(f"structural: training {'HAIL (U-Net variant)' if name == 'hail' else 'IHF-Harmony (squeeze variant)'}")
        runs[name] = str(train_structural(path, tmp / "runs" / name, quiet=quiet))
    seen, unseen = ds.train_sites, ds.unseen_sites
    pairs = [(seen[0], seen[1]), (seen[0], unseen[0])]  # a training site to another one, and to a new site
    say("structural: evaluating (a training site to another, and to a site never seen in training)")
    return evaluate_structural(
        data,
        tmp / "structural-evaluation",
        methods=[*runs.values(), *INTENSITY_BASELINES],
        pairs=pairs,
        jobs=2,
        quiet=quiet,
    )
