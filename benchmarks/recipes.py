"""Training recipes for a single network, tried on the demo's data against the statistical methods.

An exploratory comparison (one held-out subject, one target, one seed: a pointer for the dMRI
benchmark, not a result of it). After ``mrharmony demo DEMO`` (which trains DIQT for every
target with the ``demo`` preset and fits the statistical methods), it trains DIQT for
``prisma_st`` on the same data and split with variants of the recipe, each for about three to
four minutes on a 2-core CPU, and evaluates them with the demo's runs (``mrharmony dmri evaluate``:
whole-volume SH / FA / MD errors on the held-out subject against the target scan and against its
noiseless truth, beside the ``rescan`` and ``oracle`` floors):

    diqt_long         the paper's patches, 40 epochs of 1,800, cosine schedule with a warm-up
    diqt_tiles        dense training on 21^3 tiles (500 tiles of 4 per epoch, 20 epochs), cosine
    diqt_tiles_order  diqt_tiles with the order-weighted loss
    diqt_tiles_flips  diqt_tiles with flip augmentation
    diqt_flips        diqt_long with flip augmentation
    diqt_flips_valsubject  diqt_flips with the validation split by subject (one training subject's
                      patches held out for validation, instead of patches beside training ones)
    diqt_skip         the demo's recipe (4 epochs of 1,200 patches) with the input skip: DIQT
                      starts as meanvar_global (the per-channel standardization) and learns the
                      correction
    diqt_skip_flips   diqt_flips with the input skip

Usage:
    python benchmarks/recipes.py DEMO_DIR

Writes ``DEMO_DIR/configs/<variant>.yaml``, ``DEMO_DIR/runs/<variant>`` and
``DEMO_DIR/recipes/`` (the evaluation's table.md, table.csv, evaluation.json). Finished runs are
kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from mrharmony.bench.dmri import train_dmri_run

#: the variants tried: training settings on top of the demo preset (an exploratory try, not the named
#: recipes of mrharmony.dmri.recipes: this ``diqt_long`` is not the recipe of that name)
COSINE = {"lr_schedule": "cosine", "warmup_epochs": 1}
TILES = {"epochs": 20, "patches_per_epoch": 500, "batch_size": 4, "tile_size": 21, **COSINE}
VARIANTS = {
    "diqt_long": {"epochs": 40, "patches_per_epoch": 1800, **COSINE},
    "diqt_tiles": TILES,
    "diqt_tiles_order": {**TILES, "loss_weighting": "order"},
    "diqt_tiles_flips": {**TILES, "augment": "flips"},
    "diqt_flips": {"epochs": 40, "patches_per_epoch": 1800, **COSINE, "augment": "flips"},
    "diqt_flips_valsubject": {"epochs": 40, "patches_per_epoch": 1800, **COSINE, "augment": "flips"},
    "diqt_skip": {},
    "diqt_skip_flips": {"epochs": 40, "patches_per_epoch": 1800, **COSINE, "augment": "flips"},
}
#: data settings of a variant that differ from the demo's (the test split stays the same)
DATA = {"diqt_flips_valsubject": {"validation": "subject"}}
#: model settings of a variant beyond the paper's DIQT
MODEL = {"diqt_skip": {"skip": True}, "diqt_skip_flips": {"skip": True}}
BASELINES = ("diqt-prisma_st", "meanvar_global", "meanvar_voxel", "rish")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("demo", help="the output folder of 'mrharmony demo'")
    args = ap.parse_args()

    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import write_tables

    root = Path(args.demo)
    missing = [b for b in BASELINES if not (root / "runs" / b).is_dir()]
    if missing:
        raise SystemExit(f"{root}: has no run {missing[0]}; run 'mrharmony demo {root}' first.")
    held_out = yaml.safe_load((root / "configs" / "diqt-prisma_st.yaml").read_text())["data"]["test_subjects"]
    runs = [root / "runs" / b for b in BASELINES[:1]]
    for name, training in VARIANTS.items():
        cfg = {
            "preset": "demo",
            "label": name,
            "data": {
                "dataset": "../data",
                "split": "subject",
                "test_subjects": held_out,
                "split_seed": 0,
                "targets": ["prisma_st"],
                **DATA.get(name, {}),
            },
            "model": {"method": "diqt", **MODEL.get(name, {})},
            "training": {"seed": 0, **training},
        }
        runs.append(train_dmri_run(root, name, cfg))
    runs += [root / "runs" / b for b in BASELINES[1:]]
    ev = evaluate(runs, max_patches=3000, quiet=True)
    paths = write_tables(ev, root / "recipes")
    print(paths["markdown"].read_text())


if __name__ == "__main__":
    main()
