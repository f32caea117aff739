"""How much of a change of the person each trained harmonizer keeps, on held-out subjects.

For every run and every held-out subject of its split (or ``--subject``), the subject's input
scan and copies of it with the person changed (MD 15% higher, part of the signal made isotropic,
more free water: :mod:`mrharmony.simulate.person`) are harmonized to each target as ``apply``
does; the table gives the harmonized relative change of each change's measure over the input's
own (1: kept whole; 0: erased), per run, target and change, averaged over the subjects.

    python benchmarks/keeps_differences.py RUN [RUN ...] [--subject sub-03] [--json out.json]
    python benchmarks/keeps_differences.py --tiny OUT     # trains the rows below first

``--tiny OUT`` simulates the tiny preset (seed 7), prepares it and trains, holding out sub-03, the
rows of :data:`TINY_ROWS` for ``prisma_st`` (the test preset: minibatch 4, 2 epochs of 400
patches; ``diqt_long`` 12 epochs), then measures them: a quick look at what each design keeps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: the rows ``--tiny`` trains: name -> (model section, normalization, epochs)
TINY_ROWS = {
    "none": ({"method": "none"}, "platform", 1),
    "rish": ({"method": "rish"}, "platform", 1),
    "meanvar_global": ({"method": "meanvar_global"}, "platform", 1),
    "diqt": ({"method": "diqt"}, "platform", 2),
    "diqt_long": ({"method": "diqt"}, "platform", 12),
    "diqt_skip": ({"method": "diqt", "skip": True}, "platform", 2),
    "diqt_scannorm": ({"method": "diqt"}, "scan", 2),
}


def train_tiny(out: Path) -> list[str]:
    """The runs of :data:`TINY_ROWS` under ``out`` (made once; finished runs are kept)."""
    import yaml

    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.dmri.training import train
    from mrharmony.simulate import simulate

    data = out / "tiny"
    if not (data / "dataset.yaml").is_file():
        simulate(data, preset="tiny", seed=7, quiet=True)
    prepare(data, quiet=True)
    runs = []
    for name, (model, norm, epochs) in TINY_ROWS.items():
        run = out / name
        if not ((run / "model.pt").is_file() or (run / "harmonizer.json").is_file()):
            cfg = {
                "preset": "test",
                "label": name,
                "data": {
                    "dataset": str(data.resolve()),
                    "targets": ["prisma_st"],
                    "split": "subject",
                    "test_subjects": ["sub-03"],
                    "normalization": norm,
                },
                "model": model,
                "training": {"epochs": epochs, "patches_per_epoch": 400},
            }
            (out / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
            train(out / f"{name}.yaml", run, quiet=True, force=True)
        runs.append(str(run))
    return runs


def main(argv=None) -> int:
    import numpy as np

    from mrharmony.data import load_dataset
    from mrharmony.dmri.changes import kept_changes
    from mrharmony.dmri.evaluate import method_labels, shared_data_config
    from mrharmony.dmri.loading import load_harmonizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*")
    p.add_argument("--tiny", metavar="OUT", help="train the rows of TINY_ROWS on the tiny preset under OUT first")
    p.add_argument("--subject", action="append", help="subjects to change (default: the runs' held-out ones)")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    if args.tiny:
        args.runs = train_tiny(Path(args.tiny)) + args.runs
    if not args.runs:
        p.error("name runs, or --tiny OUT")
    hs = [load_harmonizer(r) for r in args.runs]
    data = shared_data_config(hs, args.runs)
    ds = load_dataset(data.dataset, check_data=False)
    splits = [Path(r if Path(r).is_dir() else Path(r).parent) / "split.json" for r in args.runs]
    subjects = args.subject or sorted(
        {s for f in splits if f.is_file() for s in json.loads(f.read_text()).get("test_subjects", [])}
    )
    if not subjects:
        p.error("no held-out subjects in the runs' splits; name them with --subject")
    rows = []
    for s in subjects:
        scan = ds.scan(s, ds.input_platform.name)
        dwi, affine = scan.load_dwi()
        bvals, bvecs = scan.gradients()
        mask = scan.load_mask()
        for name, h in zip(method_labels(hs, args.runs), hs):
            for t in h.targets:
                for kind, r in kept_changes(h, dwi.astype(np.float32), bvals, bvecs, mask, affine, t).items():
                    rows.append({"method": name, "subject": s, "target": t, "change": kind, **r})
                    print(
                        f"{name} {s} {t} {kind}: given {r['given']:+.4f} kept {r['kept']:+.4f} ({r['fraction']:.3f})",
                        flush=True,
                    )
    print(
        "\n| method | target | change | measure | kept / given (mean over subjects) |\n| --- | --- | --- | --- | --- |"
    )
    for key in dict.fromkeys((r["method"], r["target"], r["change"]) for r in rows):
        sel = [r for r in rows if (r["method"], r["target"], r["change"]) == key]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {sel[0]['measure']} | {np.mean([r['fraction'] for r in sel]):.3f} |")
    if args.json:
        from mrharmony.io import write_json

        write_json(args.json, {"runs": [str(r) for r in args.runs], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
