"""The training engine shared by every deep harmonizer: ``mrharmony train CONFIG --out RUN_DIR``.

A run is defined by one YAML config (validated on load, unknown keys are errors)::

    preset: demo                 # paper | demo | test: defaults of the training section
    data:
      dataset: th-demo           # a prepared traveling-heads dataset
      targets: [connectom_sa]    # default: every target of the dataset
      patch_size: 11
      split: patch               # patch (the paper's 90/10) or subject (held-out subjects)
    model:
      method: diqt               # diqt, cnn_rish, shresnet, cpm, hned, msp
    training:
      epochs: 8

The run directory receives ``config.yaml`` (the resolved config), ``log.txt``, ``metrics.csv``
(one row per epoch), ``split.json``, ``checkpoints/last.pt`` (everything needed to resume,
written atomically at the end of every epoch), ``checkpoints/best.pt`` (the weights of the best
validation loss) and, at the end, ``model.pt``: the best-validation weights with the metadata
of :mod:`mrharmony.dmri.models`.

Determinism: the model is initialized from ``seed``; the patches of epoch e are drawn with a
generator seeded by ``(seed, e)``; so ``--resume`` after a run stopped at any point continues
from its last completed epoch and, on the CPU, ends with the same weights as an uninterrupted
run. Test patches (by patch or by subject, from ``data.split_seed``) are never used for
training or validation; the validation patches are drawn from the rest.

Statistical methods (``none``, ``meanvar_global``, ``meanvar_voxel``, ``rish``, ``combat``) take the same
config and run directory; they are fitted in one pass by
:func:`mrharmony.dmri.statistical.fit_statistical` (no epochs, checkpoints or resume).

Distributed data parallel: started with ``torchrun --nproc_per_node N``, each process takes
1/N of every global minibatch (``batch_size`` is global) and gradients are averaged, so the
result matches one process on the same global batch. CPU processes use the gloo backend, GPUs
NCCL. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from mrharmony import __version__
from mrharmony.config import StrictModel, dump_yaml, model_from_dict, read_run_yaml
from mrharmony.errors import InputError
from mrharmony.dmri.models import (
    STATISTICAL,
    ModelConfig,
    absolute_paths,
    build_network,
    load_model,
)
from mrharmony.engine.checkpoint import parameter_count, read_checkpoint, save_model, save_state

PRESETS: dict[str, dict] = {
    # the MSP paper: minibatch 12, Adam, 1e-4 divided by sqrt(2) every 15 epochs, 50 epochs
    "paper": {"epochs": 50, "batch_size": 12, "learning_rate": 1e-4, "lr_decay_every": 15},
    # the demo: every method of Table 1 in a few minutes of CPU
    "demo": {"epochs": 4, "batch_size": 12, "learning_rate": 1e-3, "lr_decay_every": 2,
             "patches_per_epoch": 1200, "validation_patches": 400},
    "test": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "lr_decay_every": 1,
             "patches_per_epoch": 16, "validation_patches": 8},
}


class DataConfig(StrictModel):
    dataset: str
    targets: list[str] | None = None
    subjects: list[str] | None = None
    patch_size: int = Field(default=11, ge=1)
    split: Literal["patch", "subject"] = "patch"
    test_fraction: float = Field(default=0.1, gt=0, lt=1)
    test_subjects: list[str] | None = None
    n_test_subjects: int = Field(default=1, ge=1)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    split_seed: int = 0


class TrainingConfig(StrictModel):
    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=12, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    lr_decay_every: int = Field(default=15, ge=1)
    lr_decay_factor: float = Field(default=math.sqrt(2), ge=1)
    patches_per_epoch: int | None = Field(default=None, ge=1, description="None: every training patch")
    validation_patches: int | None = Field(default=None, ge=1, description="None: every validation patch")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True
    threads: int | None = Field(default=None, ge=1)


class RunConfig(StrictModel):
    preset: Literal["paper", "demo", "test"] | None = None
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read a run config; the preset fills the training keys the file does not set.

    Relative paths in the config (dataset, first-stage runs) are taken from the config's folder.
    """
    raw = read_run_yaml(path, PRESETS)
    base = Path(path).resolve().parent

    def resolve(v):
        return str((base / v).resolve()) if isinstance(v, str) else v

    data, model = raw.get("data"), raw.get("model")
    if isinstance(data, dict) and "dataset" in data:
        raw["data"] = {**data, "dataset": resolve(data["dataset"])}
    if isinstance(model, dict):
        model = dict(model)
        if isinstance(model.get("first_stage"), dict):
            model["first_stage"] = {t: resolve(r) for t, r in model["first_stage"].items()}
        if isinstance(model.get("first_stage_runs"), list):
            model["first_stage_runs"] = [resolve(r) for r in model["first_stage_runs"]]
        raw["model"] = model
    return model_from_dict(RunConfig, raw, source=path)


def resolved_config(cfg: RunConfig, run_dir: Path | None = None) -> dict:
    """The config as a run directory records it: every training and data value written out,
    the model section as given (its keys depend on the method); with ``run_dir``, paths
    relative to it (so that data and runs can move together)."""
    out = cfg.model_dump(mode="json")
    out["model"] = cfg.model.model_dump(mode="json", exclude_unset=True)
    if run_dir is not None:
        base = Path(run_dir).resolve()
        out["data"] = _relative_to(out["data"], base)
        if "first_stage" in out["model"]:
            out["model"]["first_stage"] = {t: os.path.relpath(r, base) for t, r in out["model"]["first_stage"].items()}
        if "first_stage_runs" in out["model"]:
            out["model"]["first_stage_runs"] = [os.path.relpath(r, base) for r in out["model"]["first_stage_runs"]]
    return out


def _relative_to(data: dict, run_dir: Path) -> dict:
    return {**data, "dataset": os.path.relpath(Path(data["dataset"]).resolve(), Path(run_dir).resolve())}


@dataclass
class Splits:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    test_subjects: list[str]


def make_splits(sampler, data: DataConfig) -> Splits:
    """Test patches (by patch or subject), then validation patches drawn from the rest; seeded."""
    from mrharmony.dmri.patches import split_by_patch, split_by_subject

    if data.split == "patch":
        rest, test = split_by_patch(len(sampler), test_fraction=data.test_fraction, seed=data.split_seed)
        test_subjects: list[str] = []
    else:
        rest, test = split_by_subject(sampler, test_subjects=data.test_subjects, n_test=data.n_test_subjects,
                                      seed=data.split_seed)
        test_subjects = sorted({sampler.subjects[i] for i in np.unique(sampler.subject_index()[test])})
    rng = np.random.default_rng([data.split_seed, 1])
    perm = rng.permutation(rest)
    n_val = max(1, int(round(len(rest) * data.validation_fraction)))
    return Splits(train=np.sort(perm[n_val:]), validation=np.sort(perm[:n_val]), test=test,
                  test_subjects=test_subjects)


def select_first_stage(runs: list[str], targets: list[str], data: DataConfig) -> dict[str, str]:
    """Per target, the single-network run with the lowest best validation loss (never test data).

    The runs must have been trained on the same dataset with the same split, so that no test
    patch of this run was a training patch of its first stage.
    """
    best: dict[str, tuple[float, str]] = {}
    for run in runs:
        meta = absolute_paths(read_checkpoint(Path(run) / "model.pt")["meta"], run)
        if meta["model"]["method"] not in ("diqt", "cnn_rish", "shresnet"):
            raise InputError(f"is a {meta['model']['method']} run; MSP's first stage takes single networks.", run)
        _check_same_data(run, meta, data)
        (t,) = meta["targets"]
        loss = meta["best_validation_loss"][t]
        if t in targets and (t not in best or loss < best[t][0]):
            best[t] = (loss, run)
    return {t: r for t, (_, r) in best.items()}


def _check_same_data(run: str, meta: dict, data: DataConfig) -> None:
    theirs = {k: v for k, v in meta["data"].items() if k != "targets"}
    ours = {k: v for k, v in data.model_dump(mode="json").items() if k != "targets"}
    if theirs != ours:
        diff = sorted(k for k in ours if theirs.get(k) != ours[k])
        raise InputError(
            f"was trained with other data settings ({', '.join(diff)}); MSP's first stage must share its "
            "dataset and split so that no test patch was seen in training.",
            run,
        )


class _Log:
    """Lines to the run's log.txt (rank 0 only), echoed on stderr unless quiet."""

    def __init__(self, path: Path | None, quiet: bool):
        self.path, self.quiet = path, quiet

    def __call__(self, text: str) -> None:
        if self.path is None:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}"
        with open(self.path, "a") as fh:
            fh.write(line + "\n")
        if not self.quiet:
            import sys

            print(line, file=sys.stderr)


def _distributed():
    """(rank, world size); initializes the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        import torch

        backend = "nccl" if torch.cuda.is_available() and os.environ.get("MRHARMONY_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _loss(outputs: dict, targets: dict, *, final_only: bool = False):
    """Sum over targets (and, unless ``final_only``, over every supervised output) of patch MSE."""
    import torch.nn.functional as F

    from mrharmony.dmri.networks.blocks import center_crop

    total, per_target = 0.0, {}
    for t, outs in outputs.items():
        chosen = outs[-1:] if final_only else outs
        losses = [F.mse_loss(o.float(), center_crop(targets[t], o.shape[-3:]).float()) for o in chosen]
        per_target[t] = losses[-1]
        total = total + sum(losses)
    return total, per_target


def train(config: RunConfig | str | os.PathLike, out: str | os.PathLike, *, resume: bool = False,
          force: bool = False, quiet: bool = False, stop_after_epochs: int | None = None) -> Path:
    """Train the network of ``config`` into the run directory ``out`` (see the module docstring).

    Args:
        resume: continue the run in ``out`` from its last checkpoint (``config`` may then be
            None or must equal the run's own).
        force: replace an existing run directory.
        stop_after_epochs: stop (as if killed) after this many epochs of this call; the run can
            be resumed. For time-limited jobs and for tests.
    """
    import torch

    out = Path(out)
    if config is not None and not resume:
        cfg0 = config if isinstance(config, RunConfig) else load_run_config(config)
        if cfg0.model.method in STATISTICAL:  # nothing to train by gradient: fitted in one pass
            from mrharmony.dmri.statistical import fit_statistical

            return fit_statistical(cfg0, out, force=force, quiet=quiet)
        config = cfg0
    rank, world = _distributed()
    ckpt_path = out / "checkpoints" / "last.pt"
    if resume:
        if not ckpt_path.is_file():
            raise InputError("has no checkpoint to resume from (checkpoints/last.pt is missing).", out)
        saved = load_run_config(out / "config.yaml")
        if config is not None:
            given = config if isinstance(config, RunConfig) else load_run_config(config)
            if resolved_config(given, out) != resolved_config(saved, out):
                raise InputError("differs from the config of the run being resumed; resume without a config "
                                 "or with the same one.", config if not isinstance(config, RunConfig) else out)
        cfg = saved
    else:
        if config is None:
            raise InputError("a config is needed to start a run.")
        cfg = config if isinstance(config, RunConfig) else load_run_config(config)
        if rank == 0:
            _check_new_run_dir(out, force)  # created once everything else has been checked
    tc = cfg.training
    if tc.batch_size % world:
        raise InputError(f"batch_size {tc.batch_size} is not divisible by the {world} processes.")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = _device(tc)
    log = _Log(out / "log.txt" if rank == 0 else None, quiet)

    from mrharmony.data import load_dataset
    from mrharmony.dmri.patches import PatchSampler
    from mrharmony.progress import Progress

    ds = load_dataset(cfg.data.dataset, check_data=False, subjects=cfg.data.subjects)
    targets = cfg.data.targets or [p.name for p in ds.target_platforms]
    for t in targets:
        if ds.platform(t).role != "target":  # ds.platform names the dataset's platforms for an unknown one
            raise InputError(f"{t!r} is the input platform, not a target.", Path(cfg.data.dataset) / "dataset.yaml")
    ratios = {t: ds.voxel_ratio(t) for t in targets}

    first_nets, first_models, first_runs = {}, {}, {}
    if cfg.model.method == "msp":
        first_runs = select_first_stage(cfg.model.first_stage_runs, targets, cfg.data)
        first_runs.update(cfg.model.first_stage)
        for t, run in first_runs.items():
            net, meta = load_model(run)
            if meta["targets"] != [t]:
                raise InputError(f"predicts {meta['targets']}, not {t!r}.", run)
            _check_same_data(run, meta, cfg.data)
            first_nets[t], first_models[t] = net, meta["model"]
    torch.manual_seed(tc.seed)
    in_channels = _in_channels(ds)
    net = build_network(cfg.model, ratios, in_channels, patch_size=cfg.data.patch_size, first_stage_nets=first_nets)
    for t in targets:
        first_models.setdefault(t, {"method": cfg.model.first_stage_default})
    sizes = _output_sizes(net, in_channels, cfg.data.patch_size)
    sampler = PatchSampler.from_dataset(ds, subjects=cfg.data.subjects, targets=targets, size=cfg.data.patch_size,
                                        target_sizes={t: max(s) for t, s in sizes.items()})
    splits = make_splits(sampler, cfg.data)
    n_params = parameter_count(net)
    meta = {
        "mrharmony_version": __version__,
        "model": cfg.model.model_dump(mode="json", exclude_unset=True),
        "data": _relative_to(cfg.data.model_dump(mode="json"), out),
        "targets": targets,
        "ratios": ratios,
        "in_channels": in_channels,
        "patch_size": cfg.data.patch_size,
        "output_sizes": sizes,
        "parameter_count": n_params,
        "first_stage_runs": {t: os.path.relpath(r, out.resolve()) for t, r in first_runs.items()},
        "first_stage_models": first_models if cfg.model.method == "msp" else {},
        "input_platform": ds.input_platform.name,
        **platform_reference(ds, targets, [s for s in sampler.subjects if s not in splits.test_subjects]),
    }
    # channels-last: the patch sampler already delivers that layout, and oneDNN / cuDNN are faster on it
    net.to(device, memory_format=torch.channels_last_3d)
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=tc.learning_rate)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=tc.lr_decay_every, gamma=1.0 / tc.lr_decay_factor)
    start_epoch, best_val, history = 0, math.inf, []
    best_per_target: dict[str, float] = {}
    if resume:
        ck = read_checkpoint(ckpt_path)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, best_val, history = ck["epoch"], ck["best_val"], ck["history"]
        best_per_target = ck["best_per_target"]
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from epoch {start_epoch}")
    elif rank == 0:
        _new_run_dir(out, force)
        (out / "config.yaml").write_text(dump_yaml(resolved_config(cfg, out)))
        _write_split(out / "split.json", splits, sampler.subjects)
        log(f"mrharmony {__version__}: {cfg.model.method} for {', '.join(targets)}; {n_params} parameters; "
            f"{len(splits.train)} train / {len(splits.validation)} validation / {len(splits.test)} test patches; "
            f"device {device}, {world} process(es)")

    val_idx = splits.validation
    if tc.validation_patches and len(val_idx) > tc.validation_patches:
        val_idx = np.sort(np.random.default_rng([tc.seed, 2]).choice(val_idx, tc.validation_patches, replace=False))
    autocast = _autocast(device, tc)
    epochs_run = 0
    for epoch in range(start_epoch, tc.epochs):
        if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
            break
        t0 = time.perf_counter()
        order = np.random.default_rng([tc.seed, epoch]).permutation(splits.train)
        if tc.patches_per_epoch:
            order = order[: tc.patches_per_epoch]
        n_batches = len(order) // tc.batch_size
        bar = Progress(total=n_batches * tc.batch_size, unit="patches", desc=f"epoch {epoch + 1}/{tc.epochs}",
                       quiet=quiet or rank != 0)
        model.train()
        running, seen = 0.0, 0
        local = tc.batch_size // world
        for b in range(n_batches):
            if cfg.model.method == "msp":
                net.set_alpha(_alpha(cfg.model, epoch + b / max(1, n_batches)))
            idx = order[b * tc.batch_size:(b + 1) * tc.batch_size][rank * local:(rank + 1) * local]
            x, ys = _to_torch(sampler.batch(idx), device)
            opt.zero_grad(set_to_none=True)
            with autocast():
                outputs = model(x)
            loss, _ = _loss(outputs, ys)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.update(tc.batch_size)
        bar.close()
        lr_used = opt.param_groups[0]["lr"]
        sched.step()
        if cfg.model.method == "msp":
            net.set_alpha(_alpha(cfg.model, epoch + 1))
        val_total, val_per = _validate(net, sampler, val_idx, tc.batch_size, device, autocast)
        seconds = time.perf_counter() - t0
        train_loss = running / max(1, seen)
        if world > 1:
            train_loss = _mean_across(train_loss)
        row = {"epoch": epoch + 1, "lr": lr_used,
               "alpha": float(net.alpha) if cfg.model.method == "msp" else "",
               "train_loss": train_loss, "val_loss": val_total,
               **{f"val_loss_{t}": v for t, v in val_per.items()},
               "seconds": round(seconds, 2), "patches_per_s": round(n_batches * tc.batch_size / seconds, 1)}
        history.append(row)
        improved = val_total < best_val
        if improved:
            best_val, best_per_target = val_total, dict(val_per)
        if rank == 0:
            if improved:
                save_model(out / "checkpoints" / "best.pt", net, {**meta, "epoch": epoch + 1,
                                                                  "best_validation_loss": best_per_target})
            _save_checkpoint(ckpt_path, net, opt, sched, epoch + 1, best_val, best_per_target, history)
            _write_metrics(out / "metrics.csv", history)
            log(f"epoch {epoch + 1}: train {train_loss:.4f}, validation {val_total:.4f}"
                f"{' (best)' if improved else ''}, {row['patches_per_s']} patches/s")
        epochs_run += 1
    finished = len(history) >= tc.epochs
    if finished and rank == 0:
        best = read_checkpoint(out / "checkpoints" / "best.pt")
        net.load_state_dict(best["state_dict"])
        save_model(out / "model.pt", net, {**meta, "epochs": tc.epochs, "best_epoch": best["meta"]["epoch"],
                                           "best_validation_loss": best_per_target})
        log(f"done: model.pt holds the weights of epoch {best['meta']['epoch']} (validation {best_val:.4f})")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return out


def _check_new_run_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory; choose another run directory.", out)
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError("already exists and is not empty; pass --force to overwrite it, or --resume.", out)


def _new_run_dir(out: Path, force: bool) -> None:
    import shutil

    _check_new_run_dir(out, force)
    if out.exists():
        shutil.rmtree(out)
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot be created ({exc.strerror}).", out) from None


def _device(tc: TrainingConfig):
    import torch

    if tc.device == "cuda" or (tc.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("the config asks for device 'cuda' but no GPU is available.")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _autocast(device, tc: TrainingConfig):
    import contextlib

    import torch

    if device.type == "cuda" and tc.bf16:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def platform_reference(ds, targets: list[str], subjects: list[str]) -> dict:
    """What applying the model to a new scan needs from the training data, per target platform.

    ``target_stats``: the mean over training subjects of the per-scan channel means and stds of
    the target's SH features, to map normalized predictions back to the platform's scale;
    ``target_gradients``: the platform's gradient table (of the first training subject), on
    which the harmonized signal is written; ``sh``: the SH settings of the features.
    """
    from mrharmony.dmri.features.prepare import feature_paths

    stats, grads, sh = {}, {}, None
    for t in targets:
        means, stds = [], []
        for s in subjects:
            meta = json.loads(feature_paths(ds.root, s, t)[1].read_text())
            means.append(meta["normalization"]["mean"])
            stds.append(meta["normalization"]["std"])
            sh = meta["sh"]
        stats[t] = {"mean": np.mean(means, axis=0).tolist(), "std": np.mean(stds, axis=0).tolist()}
        bvals, bvecs = ds.scan(subjects[0], t).gradients()
        grads[t] = {"bvals": bvals.tolist(), "bvecs": bvecs.tolist()}
    return {"target_stats": stats, "target_gradients": grads, "sh": sh,
            "voxel_sizes": {t: list(ds.platform(t).voxel_size) for t in targets}}


def _in_channels(ds) -> int:
    from mrharmony.dmri.features.prepare import feature_paths

    _, side = feature_paths(ds.root, ds.subjects[0], ds.input_platform.name)
    if not side.is_file():
        raise InputError("is missing; run 'mrharmony prepare' on the dataset first.", side)
    return int(json.loads(side.read_text())["n_coefficients"])


def _output_sizes(net, in_channels: int, patch: int) -> dict[str, list[int]]:
    import torch

    with torch.no_grad():
        outs = net(torch.zeros(1, in_channels, patch, patch, patch))
    return {t: [int(o.shape[-1]) for o in v] for t, v in outs.items()}


def _to_torch(batch, device):
    import torch

    x, ys = batch
    return (torch.from_numpy(x).to(device, non_blocking=True),
            {t: torch.from_numpy(y).to(device, non_blocking=True) for t, y in ys.items()})


def _alpha(cfg: ModelConfig, epoch: float) -> float:
    span = cfg.alpha_end_epoch - cfg.alpha_start_epoch
    if span <= 0:
        return 1.0 if epoch >= cfg.alpha_end_epoch else 0.0
    return min(1.0, max(0.0, (epoch - cfg.alpha_start_epoch) / span))


def _validate(net, sampler, idx, batch: int, device, autocast) -> tuple[float, dict[str, float]]:
    """Mean loss of the final predictions on the validation patches (summed over targets)."""
    import torch

    net.eval()
    sums: dict[str, float] = {}
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            part = idx[s:s + batch]
            x, ys = _to_torch(sampler.batch(part), device)
            with autocast():
                outputs = net(x)
            _, per = _loss(outputs, ys, final_only=True)
            for t, v in per.items():
                sums[t] = sums.get(t, 0.0) + float(v) * len(part)
    per_target = {t: v / max(1, len(idx)) for t, v in sums.items()}
    return float(sum(per_target.values())), per_target


def _mean_across(value: float) -> float:
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item() / dist.get_world_size())


def _save_checkpoint(path: Path, net, opt, sched, epoch, best_val, best_per_target, history) -> None:
    import torch

    save_state(path, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "epoch": epoch, "best_val": best_val,
                                 "best_per_target": best_per_target, "history": history,
                                 "torch_rng": torch.get_rng_state()})


def _write_metrics(path: Path, history: list[dict]) -> None:
    from mrharmony.io import atomic_path

    keys = list(history[0])
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def _write_split(path: Path, splits: Splits, subjects: list[str]) -> None:
    import hashlib

    from mrharmony.io import write_json

    write_json(path, {
        "n_train": len(splits.train), "n_validation": len(splits.validation), "n_test": len(splits.test),
        "test_subjects": splits.test_subjects, "subjects": list(subjects),
        "test_sha256": hashlib.sha256(np.asarray(splits.test, np.int64).tobytes()).hexdigest(),
    })
