"""``mrharmony demo [OUT]``: the whole pipeline on the synthetic demo data, in minutes on a CPU.

1. simulate the ``demo`` traveling heads (6 subjects) and prepare their SH features;
2. train, on every subject but the last (held out for testing), every dMRI network of the
   registry (:mod:`mrharmony.engine.registry`): the single networks (DIQT, CNN-RISH, SHResNet)
   for each target, the multi-task CPM and HNED, and MSP (its first stage chosen per target
   among the single networks on validation loss); fit the statistical baselines that need no
   extra (no harmonization, global and voxelwise mean/variance alignment, linear RISH);
3. evaluate them on the held-out subject (patch MSE table with paired tests, whole-volume
   SH / FA / MD errors) and write the HTML report.

Everything lands in ``OUT``: ``data/``, ``configs/``, ``runs/``, ``evaluation/`` and
``report.html``; the table is printed at the end. The training budget is the ``demo`` preset
(small: the demo shows the pipeline, the benchmark in ``benchmarks/table1.py`` measures it).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def run_demo(out: str | os.PathLike, *, preset: str = "demo", seed: int = 0, force: bool = False,
             quiet: bool = False) -> Path:
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.dmri.tables import markdown, write_tables
    from mrharmony.dmri.training import train
    from mrharmony.engine.registry import methods
    from mrharmony.io import staged_output_dir
    from mrharmony.report.html import build_report
    from mrharmony.simulate import simulate

    def say(text: str) -> None:
        if not quiet:
            print(f"== {text}", flush=True)

    out = Path(out)
    with staged_output_dir(out, force=force) as tmp:
        say(f"simulating the {preset} traveling heads")
        data = simulate(tmp / "data", preset=preset, seed=seed, quiet=quiet)
        say("fitting SH features")
        prepare(data, quiet=quiet)
        ds = load_dataset(data, check_data=False)
        targets = [p.name for p in ds.target_platforms]
        held_out = ds.subjects[-1]
        data_cfg = {"dataset": "../data", "split": "subject", "test_subjects": [held_out], "split_seed": seed}
        training = {"seed": seed}
        train_preset = "test" if preset == "tiny" else "demo"
        (tmp / "configs").mkdir()
        runs: list[Path] = []

        def run(name: str, model: dict, targets_: list[str] | None) -> Path:
            cfg = {"preset": train_preset, "data": {**data_cfg, **({"targets": targets_} if targets_ else {})},
                   "model": model, "training": training}
            path = tmp / "configs" / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            say(f"{'fitting' if model['method'] in statistical else 'training'} {name}")
            return train(path, tmp / "runs" / name, quiet=quiet)

        networks = [(m.name, m.load()) for m in methods("dmri", "network")]
        # the baselines practice uses today (ComBat needs its extra)
        statistical = [m.name for m in methods("dmri", "statistical") if m.extra is None]
        singles = [run(f"{m}-{t}", {"method": m}, [t]) for m, cls in networks if cls.single_target for t in targets]
        runs += singles
        rel = [f"../runs/{p.name}" for p in singles]
        for m, cls in networks:
            if not cls.single_target:
                first = {"first_stage_runs": rel, "alpha_end_epoch": 2.0} if cls.builds_on_single_networks else {}
                runs.append(run(m, {"method": m, **first}, None))
        for method in statistical:
            runs.append(run(method, {"method": method}, None))
        say(f"evaluating on the held-out subject {held_out}")
        ev = evaluate(runs, max_patches=5000, quiet=quiet)
        write_tables(ev, tmp / "evaluation")
        say("writing the report")
        build_report(runs, tmp / "report.html", evaluation=ev, quiet=quiet)
        table = markdown(ev)
    print(table)
    print(f"report: {out / 'report.html'}")
    print(f"tables: {out / 'evaluation'} (table.md, table.csv, evaluation.json); runs: {out / 'runs'}")
    return out
