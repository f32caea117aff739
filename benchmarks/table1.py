"""Table 1 of the MSP paper on the synthetic MUSHAC-like benchmark.

Every method of Table 1 (DIQT, CNN-RISH and SHResNet for each target; CPM; HNED; MSP over the
single networks, its first stage chosen per target on validation loss), MSP's own first stage
after its training (``msp_stage1``), two compute-matched rivals of MSP (``diqt_continued``: the
first-stage networks MSP chose, trained on for MSP's second budget and schedule, ``init_from``;
``diqt_widened``: DIQT widened to MSP's parameter count, trained on one target) and the statistical
baselines (no harmonization, global and voxelwise mean/variance alignment, linear RISH, and
ComBat on FA / MD when neuroHarmonize is installed: run with ``.venv-combat/bin/python``), on the ``mushac``
preset with the paper's protocol: input ge_st; targets prisma_st, connectom_st, connectom_sa;
11^3 patches; minibatch 12 and Adam. Run once with the paper's split (90/10 by patch) and once
with held-out subjects, each evaluated with ``mrharmony dmri evaluate`` (patch MSE, Wilcoxon +
Bonferroni, whole-volume errors).

Budgets (``--budget``):
    paper  the paper's schedule: 50 epochs of every training patch, lr 1e-4 / sqrt(2) every 15
           epochs (a GPU job: days on a 2-core CPU);
    gpu    25 epochs of 40,000 patches, lr 1e-4 / sqrt(2) every 8 epochs;
    cpu    6 epochs of 2,400 patches, lr 1e-3 / sqrt(2) every 2 epochs (a larger step because
           the run is short), validation on 600 patches: about an hour per split on 2 cores;
    smoke  the ``test`` preset, to check the script end to end (use with ``--preset tiny``).

Usage:
    .venv-combat/bin/python benchmarks/table1.py --out bench-output/table1 [--budget cpu] [--splits patch subject]

Writes, under --out: the dataset (``data/``), per split the configs, runs and evaluation
(``<split>/evaluation/table.md`` ...), and ``table1.md`` gathering both tables with the budget
and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import yaml

BUDGETS = {
    "paper": {"preset": "paper", "training": {}},
    "gpu": {"preset": "paper", "training": {"epochs": 25, "patches_per_epoch": 40000, "lr_decay_every": 8,
                                            "validation_patches": 5000}},
    "cpu": {"preset": "paper", "training": {"epochs": 6, "patches_per_epoch": 2400, "learning_rate": 1e-3,
                                            "lr_decay_every": 2, "validation_patches": 600}},
    "smoke": {"preset": "test", "training": {}},  # checks the script end to end in a minute
}
TARGETS = ("prisma_st", "connectom_st", "connectom_sa")

#: ``diqt_tuned``, DIQT trained with this project's departures from the paper's recipe, each a named
#: option: mirrored samples (augment flips), every SH order weighing the same in the loss
#: (loss_weighting order), the position channels (inputs sh+position), a warm-up and cosine decay,
#: and TUNED_STEPS times the budget's optimizer steps. Its compute-matched rival with the paper's
#: recipe is ``diqt_long`` (the same steps, the step decay stretched to them) on the control target.
TUNED_STEPS = 4
TUNED_TRAINING = {"augment": "flips", "loss_weighting": "order", "inputs": "sh+position", "lr_schedule": "cosine",
                  "warmup_epochs": 1}


def widened_diqt_features(n_params: int, target_ratio: int, in_channels: int = 28) -> int:
    """The DIQT width whose parameter count is closest to ``n_params``."""
    from mrharmony.dmri.networks.single import DIQT

    best = min(range(8, 1024, 2), key=lambda f: abs(sum(p.numel() for p in DIQT("t", in_channels, target_ratio,
                                                                                 features=f).parameters()) - n_params))
    return best


def run_split(root: Path, data: Path, split: str, budget: dict, *, seed: int, control_target: str, quiet: bool) -> Path:
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import write_tables

    work = root / split
    data_cfg = {"dataset": str(data.resolve()), "split": split, "split_seed": seed}
    if split == "subject":
        data_cfg["n_test_subjects"] = 2
    runs = train_methods(work, data_cfg, budget, seed=seed, control_target=control_target, quiet=quiet)
    print(f"[{time.strftime('%H:%M:%S')}] {split}: evaluating", flush=True)
    ev = evaluate(runs, first_stages=True, quiet=quiet)
    write_tables(ev, work / "evaluation")
    return work / "evaluation" / "table.md"


def train_dmri_run(root: Path, name: str, cfg: dict, *, tag: str | None = None, quiet: bool = True) -> Path:
    """The run ``root/runs/name`` of the run config ``cfg`` (written to ``root/configs/name.yaml``;
    relative paths in it are read from that folder): trained unless it is there (a network's
    ``model.pt`` or a statistical method's ``harmonizer.json``), an interrupted training resumed
    from its last checkpoint; its start and wall time printed (``tag``: what the lines begin with)."""
    from mrharmony.dmri.training import train

    out = root / "runs" / name
    if (out / "model.pt").exists() or (out / "harmonizer.json").exists():
        return out
    resume = (out / "checkpoints" / "last.pt").exists()
    if not resume:
        path = root / "configs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    what = f"{tag}: {name}" if tag else name
    print(f"[{time.strftime('%H:%M:%S')}] {what}{' (resumed)' if resume else ''}", flush=True)
    t0 = time.time()
    train(None if resume else root / "configs" / f"{name}.yaml", out, resume=resume, quiet=quiet)
    print(f"[{time.strftime('%H:%M:%S')}] {what}: trained in {time.time() - t0:.0f} s", flush=True)
    return out


def train_methods(work: Path, data_cfg: dict, budget: dict, *, seed: int, control_target: str, quiet: bool,
                  every_row: bool = True, widened: bool = True, tuned: bool = True,
                  statistical: bool = True) -> list[Path]:
    """Train (or find finished, or resume) every run of Table 1 under ``work/runs`` with the data
    section ``data_cfg`` and training seed ``seed``; the run directories, in table order.
    ``every_row=False`` trains only the rows a claim about MSP rests on (the single networks,
    MSP and its continued first stage), as for extra seeds; ``widened=False`` leaves out
    ``diqt_widened`` (a DIQT with MSP's parameter count, the costliest single run);
    ``tuned=False`` leaves out ``diqt_tuned`` and its rival ``diqt_long``; ``statistical=False``
    the statistical methods (a caller that fits its own)."""
    from mrharmony.engine.checkpoint import read_checkpoint

    work = Path(work).resolve()  # the configs name runs by absolute path (a relative one would be read from configs/)
    (work / "configs").mkdir(parents=True, exist_ok=True)
    tag = "/".join(work.parts[-2:])  # e.g. fold-0/seed-1, or table1/subject

    def run(name: str, model: dict, targets: list[str] | None, label: str | None = None,
            training: dict | None = None) -> Path:
        cfg = {"preset": budget["preset"], **({"label": label} if label else {}),
               "data": {**data_cfg, **({"targets": targets} if targets else {})},
               "model": model, "training": {**budget["training"], **(training or {}), "seed": seed}}
        return train_dmri_run(work, name, cfg, tag=tag, quiet=quiet)

    from mrharmony.dmri.registry import REGISTRY

    networks = [(m.name, m.config) for m in REGISTRY.methods("network")]
    singles = [run(f"{m}-{t}", {"method": m}, [t]) for m, cls in networks if cls.single_target for t in TARGETS]
    runs = list(singles)
    for m, cls in networks:  # every target at once; MSP from the single networks above
        if not cls.single_target and (every_row or cls.builds_on_single_networks):
            first = ({"first_stage_runs": [str(p) for p in singles],
                      "alpha_end_epoch": max(1.0, budget_epochs(budget) / 3)} if cls.builds_on_single_networks else {})
            runs.append(run(m, {"method": m, **first}, None))
    msp_meta = read_checkpoint(work / "runs" / "msp" / "model.pt")["meta"]
    # compute-matched rivals of MSP: its chosen first-stage networks trained on for the same budget and
    # schedule as MSP's second stage (diqt_continued), and a DIQT as wide as MSP (diqt_widened)
    for t, first in msp_meta["first_stage_runs"].items():
        first = (work / "runs" / "msp" / first).resolve()
        method = read_checkpoint(first / "model.pt")["meta"]["model"]["method"]
        runs.append(run(f"{method}-continued-{t}", {"method": method, "init_from": str(first)}, [t],
                        label=f"{method}_continued"))
    epochs = budget_epochs(budget)
    longer = {"epochs": TUNED_STEPS * epochs}
    for t in TARGETS if tuned else ():  # this project's recipe (a claim rests on it: trained with every seed)
        runs.append(run(f"diqt-tuned-{t}", {"method": "diqt"}, [t], label="diqt_tuned",
                        training={**longer, **TUNED_TRAINING}))
    if not every_row:
        return runs
    decay = budget_setting(budget, "lr_decay_every")
    if tuned:
        runs.append(run(f"diqt-long-{control_target}", {"method": "diqt"}, [control_target], label="diqt_long",
                        training={**longer, "lr_decay_every": TUNED_STEPS * decay}))
    if widened:
        ratio = 2 if control_target == "connectom_sa" else 1
        width = widened_diqt_features(msp_meta["parameter_count"], ratio)
        runs.append(run(f"diqt-wide-{control_target}", {"method": "diqt", "features": width}, [control_target],
                        label="diqt_widened"))
    for method in statistical_methods() if statistical else ():
        runs.append(run(method, {"method": method}, None))
    return runs


def statistical_methods() -> list[str]:
    """The statistical baselines; ComBat where neuroHarmonize is installed (.venv-combat)."""
    from mrharmony.dmri.registry import REGISTRY
    from mrharmony.errors import InputError

    names = []
    for m in REGISTRY.methods("statistical"):
        try:
            m.config.harmonizer().check_requirements()
            names.append(m.name)
        except InputError:  # its extra is not installed here
            print(f"{m.name} needs the {m.extra} extra: no {m.name} rows (run with .venv-combat/bin/python for them)")
    return names


def budget_epochs(budget: dict) -> int:
    return int(budget_setting(budget, "epochs"))


def budget_setting(budget: dict, key: str):
    """A training setting of the budget: its own, else its preset's, else the config's default."""
    from mrharmony.dmri.config import PRESETS, TrainingConfig

    return budget["training"].get(key, PRESETS[budget["preset"]].get(key, TrainingConfig.model_fields[key].default))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-output/table1")
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    ap.add_argument("--splits", nargs="+", choices=["patch", "subject"], default=["patch", "subject"])
    ap.add_argument("--preset", default="mushac", help="dataset preset (mushac; demo for a quick check)")
    ap.add_argument("--control-target", default="prisma_st", choices=TARGETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.simulate import simulate

    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    t0 = time.time()
    if not (data / "dataset.yaml").exists():
        simulate(data, preset=args.preset, seed=args.seed, quiet=args.quiet)
    prepare(data, quiet=args.quiet)
    budget = BUDGETS[args.budget]
    tables = {s: run_split(root, data, s, budget, seed=args.seed, control_target=args.control_target,
                           quiet=args.quiet) for s in args.splits}
    hours = (time.time() - t0) / 3600
    head = [f"# Table 1 on the synthetic `{args.preset}` benchmark", "",
            (f"Command: `python benchmarks/table1.py --out {args.out} --budget {args.budget} "
             f"--splits {' '.join(args.splits)} --preset {args.preset}`"), "",
            (f"Machine: {platform.node()} ({os.cpu_count()} cores); budget `{args.budget}`: "
             f"preset {budget['preset']} with {budget['training'] or 'no changes'}; {hours:.2f} h in all."), ""]
    body = []
    for s, path in tables.items():
        body += [f"## Split: {s}", "", path.read_text(), ""]
    (root / "table1.md").write_text("\n".join(head + body))
    print("\n".join(head + body))


if __name__ == "__main__":
    main()
