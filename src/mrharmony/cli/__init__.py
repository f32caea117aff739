"""The ``mrharmony`` command line: one command, subcommands.

Heavy modules (numpy, nibabel, dipy, torch) are imported inside the subcommands, so that
``mrharmony --help`` answers at once. An :class:`~mrharmony.errors.InputError` becomes one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrharmony import __version__

EXIT_INPUT = 2


def _cmd_simulate(args) -> int:
    if args.kind == "structural":
        from mrharmony.simulate.structural import simulate_structural

        if args.platforms:
            raise _usage("--platforms describes dMRI platforms; structural sites come from --sites")
        out = simulate_structural(args.out, preset=args.preset, seed=args.seed, sites_file=args.sites,
                                  n_subjects=args.subjects, force=args.force, quiet=args.quiet)
        _say(args, f"wrote the {args.preset} multi-site structural dataset to {out}")
        return 0
    from mrharmony.simulate import simulate

    if args.sites:
        raise _usage("--sites describes structural sites; dMRI platforms come from --platforms")
    out = simulate(args.out, preset=args.preset, seed=args.seed, platforms_file=args.platforms,
                   n_subjects=args.subjects, force=args.force, quiet=args.quiet, jobs=args.jobs)
    _say(args, f"wrote the {args.preset} traveling-heads dataset to {out}")
    return 0


def _cmd_prepare(args) -> int:
    from mrharmony.config import load_yaml_model
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.dmri.features.sh import SHConfig

    cfg = load_yaml_model(SHConfig, args.config) if args.config else SHConfig()
    overrides = {k: v for k, v in (("sh_order_max", args.sh_order), ("basis", args.basis),
                                   ("smooth", args.smooth)) if v is not None}
    if overrides:
        cfg = SHConfig(**{**cfg.model_dump(), **overrides})
    report = prepare(args.dataset, cfg=cfg, force=args.force, quiet=args.quiet, register=args.register)
    _say(args, f"SH features in {report.out_dir}: {len(report.computed)} scans computed, "
               f"{len(report.cached)} up to date")
    return 0


def _cmd_validate(args) -> int:
    from mrharmony.data import load_dataset

    ds = load_dataset(args.dataset, check_data=not args.headers_only)
    targets = ", ".join(p.name for p in ds.target_platforms)
    _say(args, f"{ds.root}: valid traveling-heads dataset, {len(ds.subjects)} subjects, "
               f"input {ds.input_platform.name}, targets {targets}")
    return 0


def _cmd_train(args) -> int:
    from mrharmony.dmri.training import train

    if args.config is None and not args.resume:
        raise _usage("a CONFIG is needed unless --resume continues a run")
    run = train(args.config, args.out, resume=args.resume, force=args.force, quiet=args.quiet,
                stop_after_epochs=args.stop_after_epochs)
    _say(args, f"run directory: {run}")
    return 0


def _cmd_evaluate(args) -> int:
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import markdown, write_tables

    from mrharmony.io import staged_output_dir

    ev = evaluate(args.runs, eval_size=args.eval_size, max_patches=args.max_patches or None, seed=args.seed,
                  baseline=not args.no_baseline, volume_metrics=not args.no_volume_metrics, quiet=args.quiet)
    if args.out:
        with staged_output_dir(args.out, force=args.force) as tmp:
            write_tables(ev, tmp)
    print(markdown(ev))
    if args.out:
        _say(args, f"tables in {args.out}: table.md, table.csv, evaluation.json")
    return 0


def _cmd_apply(args) -> int:
    from mrharmony.dmri.apply import apply_model

    out = apply_model(args.model, dwi=args.dwi, bval=args.bval, bvec=args.bvec, mask=args.mask, out=args.out,
                      targets=args.target, prefix=args.prefix, force=args.force)
    _say(args, f"harmonized outputs in {out}")
    return 0


def _cmd_describe(args) -> int:
    from mrharmony.data.bids import describe

    path = describe(args.data, args.out, layout=args.layout, input_platform=args.input, entity=args.entity,
                    name=args.name, force=args.force)
    _say(args, f"wrote {path}; check it, then: mrharmony validate {Path(path).parent}")
    return 0


def _cmd_bids(args) -> int:
    from mrharmony.dmri.bids_app import run_bids_app

    written = run_bids_app(args.bids_dir, args.output_dir, args.analysis_level, model=args.model,
                           participants=args.participant_label, filters=args.filter, targets=args.target,
                           force=args.force, quiet=args.quiet)
    _say(args, f"harmonized {len(written)} participant(s) into {args.output_dir}")
    return 0


def _usage(text: str):
    from mrharmony.errors import InputError

    return InputError(text + ".")


def _cmd_demo(args) -> int:
    from mrharmony.demo import run_demo

    run_demo(args.out, preset=args.preset, seed=args.seed, force=args.force, quiet=args.quiet)
    return 0


def _cmd_report(args) -> int:
    from mrharmony.report.html import build_report

    out = build_report(args.runs, args.out, target=args.target, subject=args.subject, force=args.force,
                       quiet=args.quiet)
    _say(args, f"report: {out}")
    return 0


def _cmd_structural_metrics(args) -> int:
    import json

    from mrharmony.structural.metrics import metrics_from_files

    res = metrics_from_files(input_path=args.input, prediction_path=args.prediction, target_path=args.target,
                             input_mask_path=args.mask, target_mask_path=args.target_mask, truth_path=args.truth,
                             modality=args.modality)
    text = json.dumps(res, indent=2)
    if args.json:
        from mrharmony.io import write_text

        if Path(args.json).exists() and not args.force:
            raise _usage(f"{args.json} already exists; pass --force to overwrite it")
        write_text(Path(args.json), text + "\n")
    print(text)
    return 0


def _cmd_structural_train(args, method: str = "hail") -> int:
    from mrharmony.structural.training import train_structural

    out = train_structural(args.config, args.out, resume=args.resume, force=args.force, quiet=args.quiet,
                           stop_after_epochs=args.stop_after_epochs, method=method)
    done = (out / "model.pt").is_file()
    _say(args, f"{'trained' if done else 'stopped (resume with --resume)'}: {out}")
    return 0


def _cmd_structural_apply(args, method: str = "hail") -> int:
    from mrharmony.structural.apply import apply_image_model

    out = apply_image_model(args.model, method=method, input_path=args.input, target_path=args.target_image,
                            out=args.out, mask_path=args.mask, target_mask_path=args.target_mask, force=args.force)
    _say(args, f"harmonized image: {out}")
    return 0


def _cmd_flow_train(args) -> int:
    return _cmd_structural_train(args, method="ihf")


def _cmd_flow_apply(args) -> int:
    return _cmd_structural_apply(args, method="ihf")


def _say(args, text: str) -> None:
    if not args.quiet:
        print(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mrharmony", description="Harmonize MRI across scanners, sites and protocols.")
    p.add_argument("--version", action="version", version=f"mrharmony {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_text):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--quiet", action="store_true", help="no progress or summary output")
        sp.set_defaults(func=func)
        return sp

    sp = add("simulate", _cmd_simulate, "Generate synthetic traveling heads: dMRI platforms or structural sites.")
    sp.add_argument("out", help="output folder (must not exist, or be empty, unless --force)")
    sp.add_argument("--kind", default="dmri", choices=["dmri", "structural"],
                    help="dmri: traveling-heads diffusion MRI (default); structural: multi-site T1-weighted MRI")
    sp.add_argument("--preset", default="demo", choices=["tiny", "demo", "mushac", "full"],
                    help="size: tiny (tests, seconds), demo, and mushac (dmri: 10 subjects, whole brain) or "
                         "full (structural: 16 subjects, whole brain)")
    sp.add_argument("--sites", help="structural: sites YAML (default: the packaged sites.yaml)")
    sp.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    sp.add_argument("--platforms", help="platforms YAML describing the scanners (default: the packaged one)")
    sp.add_argument("--subjects", type=int, help="number of subjects (default: the preset's)")
    sp.add_argument("--jobs", type=int, help="subjects rendered in parallel (default: CPU cores, at most 4)")
    sp.add_argument("--force", action="store_true", help="replace an existing output folder")

    sp = add("prepare", _cmd_prepare, "Fit SH features of every scan of a dataset (cached).")
    sp.add_argument("dataset", help="traveling-heads dataset folder (with dataset.yaml)")
    sp.add_argument("--config", help="YAML with SH settings (sh_order_max, basis, legacy, smooth, b0_threshold, shell)")
    sp.add_argument("--sh-order", type=int, help="maximum SH order (default 6: 28 coefficients)")
    sp.add_argument("--basis", choices=["descoteaux07", "tournier07"], help="dipy SH basis (default descoteaux07)")
    sp.add_argument("--smooth", type=float, help="Laplace-Beltrami regularization (default 0.006)")
    sp.add_argument("--force", action="store_true", help="recompute even the scans that are up to date")
    sp.add_argument("--register", action="store_true",
                    help="first register target scans that are not co-registered with the subject's input scan "
                         "(rigid, dipy); copies go to derivatives/mrharmony-registered")

    sp = add("validate", _cmd_validate, "Check a traveling-heads dataset and report the first problem.")
    sp.add_argument("dataset", help="traveling-heads dataset folder (with dataset.yaml)")
    sp.add_argument("--headers-only", action="store_true", help="skip reading voxel data (NaN/Inf, empty masks)")

    sp = add("train", _cmd_train, "Train a deep harmonizer (DIQT, CNN-RISH, SHResNet, CPM, HNED, MSP) from a YAML config.")
    sp.add_argument("config", nargs="?", help="run config (YAML); optional with --resume")
    sp.add_argument("--out", required=True, help="run directory (config, log, metrics, checkpoints, model.pt)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    sp.add_argument("--force", action="store_true", help="replace an existing run directory")
    sp.add_argument("--stop-after-epochs", type=int, metavar="N",
                    help="stop after N epochs of this call (resumable), e.g. for time-limited jobs")

    sp = add("evaluate", _cmd_evaluate, "Compare trained methods on their common test split (Table 1 of the MSP paper).")
    sp.add_argument("runs", nargs="+", help="run directories (same dataset and split)")
    sp.add_argument("--out", help="folder for table.md, table.csv and evaluation.json")
    sp.add_argument("--eval-size", type=int, default=5, help="central input voxels of each patch that are scored (default 5)")
    sp.add_argument("--max-patches", type=int, default=20000, help="seeded subsample of test patches (0: all)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-baseline", action="store_true", help="leave out the 'none' (no harmonization) row")
    sp.add_argument("--no-volume-metrics", action="store_true", help="skip whole-volume SH/FA/MD errors")
    sp.add_argument("--force", action="store_true", help="replace an existing --out folder")

    sp = add("apply", _cmd_apply, "Harmonize a new subject's scan with a trained model.")
    sp.add_argument("model", help="run directory or model.pt")
    sp.add_argument("--dwi", required=True)
    sp.add_argument("--bval", required=True)
    sp.add_argument("--bvec", required=True)
    sp.add_argument("--mask", help="brain mask (default: computed from the b=0 volumes and written with the outputs)")
    sp.add_argument("--out", required=True, help="output folder (BIDS-derivative style)")
    sp.add_argument("--target", action="append", help="target platform (repeatable; default: all the model predicts)")
    sp.add_argument("--prefix", help="start of the output file names, e.g. sub-01 (default: from the DWI file name)")
    sp.add_argument("--force", action="store_true", help="replace an existing output folder")

    sp = add("describe", _cmd_describe, "Write dataset.yaml for a BIDS or MUSHAC-layout folder of traveling heads.")
    sp.add_argument("data", help="the BIDS dataset or the MUSHAC-layout folder")
    sp.add_argument("--layout", required=True, choices=["bids", "mushac"])
    sp.add_argument("--input", required=True,
                    help="the input platform: the entity value (BIDS, e.g. ge) or scanner/protocol (MUSHAC, e.g. ge/st)")
    sp.add_argument("--entity", choices=["ses", "acq", "run"], help="BIDS: the entity that names the platform")
    sp.add_argument("--out", required=True, help="folder for dataset.yaml (and later the derivatives)")
    sp.add_argument("--name", help="dataset name (default: the data folder's)")
    sp.add_argument("--force", action="store_true", help="overwrite an existing dataset.yaml")

    sp = add("bids", _cmd_bids, "BIDS App: harmonize the dwi runs of BIDS participants into a derivative dataset.")
    sp.add_argument("bids_dir")
    sp.add_argument("output_dir")
    sp.add_argument("analysis_level", choices=["participant"])
    sp.add_argument("--participant-label", nargs="+", help="participants (with or without sub-); default all")
    sp.add_argument("--model", required=True, help="run directory or model.pt")
    sp.add_argument("--filter", action="append", metavar="ENTITY=VALUE",
                    help="harmonize only runs with this entity value, e.g. ses=ge (repeatable)")
    sp.add_argument("--target", action="append", help="target platform (repeatable; default: all the model predicts)")
    sp.add_argument("--force", action="store_true", help="replace existing participant outputs")

    sp = add("structural", None, "Structural (T1-weighted) harmonization: HAIL training and applying, and metrics.")

    def subcommands(group, dest: str):
        """An ``add(name, func, help)`` for the subcommands of a command group."""
        sub_parsers = group.add_subparsers(dest=dest, metavar="SUBCOMMAND", required=True)

        def add_sub(name, func, help_text):
            q = sub_parsers.add_parser(name, help=help_text, description=help_text)
            q.set_defaults(func=func)
            q.add_argument("--quiet", action="store_true", help="no progress or summary output")
            return q

        return add_sub

    sadd = subcommands(sp, "structural_command")

    def image_commands(add_to, train_func, apply_func, what: str, model_name: str):
        tp = add_to("train", train_func, f"Train {what} from a YAML config.")
        tp.add_argument("config", nargs="?", help="run config (YAML); optional with --resume")
        tp.add_argument("--out", required=True, help="run directory (config, log, metrics, checkpoints, model.pt)")
        tp.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        tp.add_argument("--force", action="store_true", help="replace an existing run directory")
        tp.add_argument("--stop-after-epochs", type=int, metavar="N",
                        help="stop after N epochs of this call (resumable)")
        ap = add_to("apply", apply_func, f"Harmonize an image to the site of one target image ({model_name}).")
        ap.add_argument("model", help=f"{model_name} run directory or model.pt")
        ap.add_argument("--input", required=True, help="the image to harmonize (3D NIfTI)")
        ap.add_argument("--target-image", required=True, help="one image of the target site (any subject, any grid)")
        ap.add_argument("--out", required=True, help="the harmonized image to write (.nii.gz; float32, input's "
                                                     "grid), with a JSON sidecar beside it")
        ap.add_argument("--mask", help="brain mask of the input (default: Otsu threshold, largest component, "
                                       "holes filled; meant for skull-stripped images)")
        ap.add_argument("--target-mask", help="brain mask of the target image (default: as --mask)")
        ap.add_argument("--force", action="store_true", help="overwrite --out and its sidecar")

    image_commands(sadd, _cmd_structural_train, _cmd_structural_apply,
                   "HAIL (autoencoder, then one-shot style transfer)", "HAIL")

    mp = sadd("metrics", _cmd_structural_metrics, "nWD(i,p), nWD(t,p), rAVD and Dice (GM, WM), and SSIM / PSNR against a truth")
    mp.add_argument("--input", required=True, help="the image before harmonization")
    mp.add_argument("--prediction", required=True, help="the harmonized image (on the input's grid)")
    mp.add_argument("--target", required=True, help="the one image of the target site")
    mp.add_argument("--mask", help="brain mask of the input (default: Otsu, largest component, holes filled)")
    mp.add_argument("--target-mask", help="brain mask of the target image (default: as --mask)")
    mp.add_argument("--truth", help="the same subject seen by the target site (for SSIM / PSNR)")
    mp.add_argument("--modality", default="T1w", choices=["T1w", "T2w", "FLAIR"],
                    help="the images' modality: the tissues' intensity order for the segmentation (default T1w)")
    mp.add_argument("--json", help="also write the metrics to this file")
    mp.add_argument("--force", action="store_true", help="overwrite --json")

    sp = add("flow", None, "IHF-Harmony: unpaired harmonization of any modality through an exactly invertible flow.")
    image_commands(subcommands(sp, "flow_command"), _cmd_flow_train, _cmd_flow_apply,
                   "IHF-Harmony (feature encoder, then the invertible flow on unpaired images)", "IHF-Harmony")

    sp = add("report", _cmd_report, "Write a self-contained HTML report of trained runs.")
    sp.add_argument("runs", nargs="+", help="run directories (same dataset and split)")
    sp.add_argument("--out", required=True, help="the HTML file to write")
    sp.add_argument("--target", help="target platform of the Fig. 3 views (default connectom_sa)")
    sp.add_argument("--subject", help="subject of the Fig. 3 views (default: the first held-out one)")
    sp.add_argument("--force", action="store_true", help="replace an existing report")

    sp = add("demo", _cmd_demo, "Run the whole pipeline on the synthetic demo data: simulate, prepare, train, evaluate, report.")
    sp.add_argument("out", nargs="?", default="demo-output", help="output folder (default demo-output)")
    sp.add_argument("--preset", default="demo", choices=["tiny", "demo", "mushac"],
                    help="data size (default demo; tiny for a quick check)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--force", action="store_true", help="replace an existing output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_INPUT
    from mrharmony.errors import InputError

    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"mrharmony {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("mrharmony: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
