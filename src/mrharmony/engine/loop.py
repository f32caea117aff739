"""THE training loop of mrharmony: every trained method family runs through :func:`train`.

What differs between families is small and plugged in (the shape of MONAI's workflows: one loop,
the iteration step and the handlers passed in):

* a :class:`RunFamily` reads and records the family's run config and builds its trainee;
* a :class:`Trainee` says what trains in which :class:`Phase` (its optimizer and scheduler), what
  one epoch's batches are, the loss of a batch, the validation metrics, per-step hooks (MSP's
  alpha ramp) and which part of the network is deployed as ``model.pt``.

The loop owns the rest, once for every family: the run directory (:mod:`mrharmony.engine.run`),
``config.yaml`` and ``split.json``, the log, ``metrics.csv``, the resumable state
``checkpoints/last.pt`` written atomically after every epoch, ``checkpoints/best.pt`` (lowest
validation loss of the phases that select the model), ``model.pt`` at the end, the device and
bf16 autocast, distributed data parallel, progress and ``stop_after_epochs``.

Determinism: the trainee seeds its model from the config's seed and draws epoch ``e``'s batches
from a generator seeded by ``(seed, e)``; the checkpoint holds the weights, the optimizer and
scheduler states, the phase, the history and torch's global generator (its state, a tensor). A run
resumed after any completed epoch therefore ends, on the CPU, with exactly the weights of an
uninterrupted run. Everything a run saves is tensors and plain values
(:func:`mrharmony.engine.checkpoint.check_plain`; a trainee's ``meta`` is checked before the first
epoch), so that opening a model or a checkpoint never runs code from it.
"""

from __future__ import annotations

import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrharmony.errors import InputError


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one optimizer: ``name`` shows in the log, and only phases that
    ``select_best`` compete for ``best.pt``."""

    name: str
    epochs: int
    select_best: bool = True


@dataclass
class Epoch:
    """One epoch's batches (an iterable of whatever :meth:`Trainee.loss` takes) and their count;
    ``items`` per batch in ``unit`` for the progress bar and the rate in ``metrics.csv``."""

    batches: Iterable
    n_batches: int
    items: int
    unit: str


@dataclass(frozen=True)
class Machine:
    """Where a run trains: the torch device, an autocast context factory, and this process's
    rank among ``world`` processes (distributed data parallel)."""

    device: Any
    autocast: Callable
    rank: int = 0
    world: int = 1


class Trainee(ABC):
    """What a method family plugs into :func:`train` (see the module docstring).

    Attributes set by the subclass: ``net`` (every weight that trains, checkpointed whole),
    ``phases``, ``meta`` (what ``model.pt`` records besides the weights).
    """

    net: Any
    phases: list[Phase]
    meta: dict

    @abstractmethod
    def optimizer(self, phase: int) -> tuple[Any, Any]:
        """(optimizer, scheduler or None) of phase ``phase``; sets which parameters train."""

    @abstractmethod
    def epoch(self, epoch: int, phase: int) -> Epoch:
        """The batches of epoch ``epoch`` (drawn from a generator seeded by the seed and ``epoch``)."""

    @abstractmethod
    def loss(self, model, batch, phase: int) -> dict:
        """Losses of one batch as tensors; ``loss`` is the one minimized. ``model`` is ``net`` or
        its distributed wrapper."""

    @abstractmethod
    def validate(self, phase: int) -> dict[str, float]:
        """Validation metrics after an epoch; ``loss`` selects the best model."""

    def on_progress(self, epoch: float) -> None:
        """Called before every step with the fractional epoch, and after each epoch (schedules)."""

    def columns(self) -> dict:
        """Extra columns of this epoch's row in ``metrics.csv``."""
        return {}

    def best_record(self, validation: dict[str, float]) -> Any:
        """What ``model.pt`` records as ``best_validation_loss``."""
        return validation["loss"]

    def deployed(self):
        """The module saved as ``model.pt`` (what applying needs)."""
        return self.net

    def split_record(self) -> dict:
        """The content of ``split.json``."""
        return {}

    def start_line(self) -> str:
        """The first line of the log: what trains, on what data."""
        return type(self).__name__


#: what a training state (``checkpoints/last.pt``) holds besides its format version
RESUME_KEYS = ("model", "optimizer", "scheduler", "phase", "epoch", "best_val", "best_record", "history", "torch_rng")


def cosine_decay(base: float, progress: float) -> float:
    """A learning rate decayed by a half cosine from ``base`` at ``progress`` 0 to 0 at 1
    (``progress`` clipped to [0, 1])."""
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def set_learning_rate(optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group (a schedule applied before each step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


class RunFamily(ABC):
    """A family of methods with one run config: how the config is read and recorded, and its trainee."""

    #: the config class (a validated config passes through unchanged)
    config_type: type
    #: whether its trainee shards batches over processes (distributed data parallel)
    distributed: bool = False
    #: how the processes' gradients meet: ``ddp`` (the network wrapped in DistributedDataParallel,
    #: whose gradient hooks expect one forward call a step) or ``all_reduce`` (the gradients averaged
    #: after the backward pass, for losses that call the network several times a step)
    gradient_sync: str = "ddp"

    @abstractmethod
    def load_config(self, path: str | os.PathLike):
        """Read a run config file (errors name the file and the key)."""

    @abstractmethod
    def resolved(self, cfg, run_dir: Path) -> dict:
        """The config as ``config.yaml`` records it: every value written out, paths relative to
        the run directory."""

    def check(self, cfg, source) -> None:
        """Checks of the config that need no data (before the run directory is touched)."""

    @abstractmethod
    def trainee(self, cfg, out: Path, machine: Machine, *, source, quiet: bool) -> Trainee:
        """Read the data and build the trainee (its model seeded from the config's seed)."""


def train(
    family: RunFamily,
    config,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    stop_after_epochs: int | None = None,
) -> Path:
    """Train the run of ``config`` (a config object or its YAML file) into the run directory ``out``.

    Args:
        resume: continue the run in ``out`` from its last checkpoint (``config`` may then be
            None, or must equal the run's own).
        force: replace an existing run directory.
        stop_after_epochs: stop (as if killed) after this many epochs of this call; the run can
            be resumed. For time-limited jobs and for tests.
    """
    import torch

    from mrharmony import __version__
    from mrharmony.config import dump_yaml
    from mrharmony.engine.checkpoint import check_plain, read_checkpoint, save_model, save_state
    from mrharmony.engine.run import (
        RunLog,
        autocast,
        average_gradients,
        barrier,
        broadcast_parameters,
        check_new_run_dir,
        distributed,
        mean_across_processes,
        new_run_dir,
        select_device,
        write_metrics,
    )
    from mrharmony.io import write_json
    from mrharmony.progress import Progress

    out = Path(out)
    rank, world = distributed()
    if world > 1 and not family.distributed:
        raise InputError(f"this method trains in one process; it was started in {world}.")
    ckpt_path = out / "checkpoints" / "last.pt"
    given = config if config is None or isinstance(config, family.config_type) else family.load_config(config)
    if resume:
        if not ckpt_path.is_file():
            raise InputError("has no checkpoint to resume from (checkpoints/last.pt is missing).", out)
        cfg = family.load_config(out / "config.yaml")
        if given is not None and family.resolved(given, out) != family.resolved(cfg, out):
            raise InputError(
                "differs from the config of the run being resumed; resume without a config or with the same one.",
                config if isinstance(config, (str, os.PathLike)) else out,
            )
        source = out / "config.yaml"
    else:
        if given is None:
            raise InputError("a config is needed to start a run.")
        cfg, source = given, (config if isinstance(config, (str, os.PathLike)) else out)
    family.check(cfg, source)
    if not resume and rank == 0:
        check_new_run_dir(out, force)  # created once everything else has been checked
    tc = cfg.training
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = select_device(tc.device)
    machine = Machine(device=device, autocast=autocast(device, tc.bf16), rank=rank, world=world)
    trainee = family.trainee(cfg, out, machine, source=source, quiet=quiet)
    check_plain(trainee.meta, "the trainee's meta")  # saved with every best.pt: refused now, not after an epoch
    net = trainee.net
    model = net
    all_reduce = world > 1 and family.gradient_sync == "all_reduce"
    if world > 1 and not all_reduce:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    elif all_reduce:
        broadcast_parameters(net)  # every process starts from rank 0's weights, as DDP does
    phase_of = [i for i, ph in enumerate(trainee.phases) for _ in range(ph.epochs)]
    total = len(phase_of)
    multi = len(trainee.phases) > 1
    log = RunLog(out / "log.txt" if rank == 0 else None, quiet)
    start, history, best_val, best_record = 0, [], math.inf, None
    if resume:
        ck = read_checkpoint(ckpt_path)
        missing = [k for k in RESUME_KEYS if k not in ck]
        if missing:
            raise InputError(
                f"is not a training state this mrharmony can resume (it has no {', '.join(missing)}); "
                "start the run again (with --force).",
                ckpt_path,
            )
        net.load_state_dict(ck["model"])
        opt_phase = ck["phase"]
        opt, sched = trainee.optimizer(opt_phase)
        opt.load_state_dict(ck["optimizer"])
        if sched is not None:
            sched.load_state_dict(ck["scheduler"])
        start, history, best_val, best_record = ck["epoch"], ck["history"], ck["best_val"], ck["best_record"]
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from epoch {start}")
    else:
        if rank == 0:
            new_run_dir(out, force)
            (out / "config.yaml").write_text(dump_yaml(family.resolved(cfg, out)))
            write_json(out / "split.json", trainee.split_record())
            log(f"mrharmony {__version__}: {trainee.start_line()}; device {device}, {world} process(es)")
        opt_phase = phase_of[0] if phase_of else 0
        opt, sched = trainee.optimizer(opt_phase)

    epochs_run = 0
    for epoch in range(start, total):
        if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
            break
        phase = phase_of[epoch]
        if phase != opt_phase:  # a new phase: what trains changes, with a new optimizer
            (opt, sched), opt_phase = trainee.optimizer(phase), phase
        name = f"{trainee.phases[phase].name} " if multi else ""
        t0 = time.perf_counter()
        ep = trainee.epoch(epoch, phase)
        bar = Progress(
            total=ep.n_batches * ep.items,
            unit=ep.unit,
            desc=f"{name}epoch {epoch + 1}/{total}",
            quiet=quiet or rank != 0,
        )
        model.train()
        sums: dict[str, float] = {}
        for b, batch in enumerate(ep.batches):
            trainee.on_progress(epoch + b / max(1, ep.n_batches))
            opt.zero_grad(set_to_none=True)
            with machine.autocast():
                losses = trainee.loss(model, batch, phase)
            losses["loss"].backward()
            if all_reduce:
                average_gradients(net)
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.update(ep.items)
        bar.close()
        lr_used = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        trainee.on_progress(epoch + 1)
        train_means = {k: v / max(1, ep.n_batches) for k, v in sums.items()}
        if world > 1:
            train_means = {k: mean_across_processes(v) for k, v in train_means.items()}
        val = trainee.validate(phase)
        seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            **({"phase": phase + 1} if multi else {}),
            "lr": lr_used,
            **trainee.columns(),
            **{f"train_{k}": v for k, v in train_means.items()},
            **{f"val_{k}": v for k, v in val.items()},
            "seconds": round(seconds, 2),
            f"{ep.unit}_per_s": round(ep.n_batches * ep.items / seconds, 1),
        }
        history.append(row)
        improved = trainee.phases[phase].select_best and val["loss"] < best_val
        if improved:
            best_val, best_record = val["loss"], trainee.best_record(val)
        if rank == 0:
            if improved:
                save_model(
                    out / "checkpoints" / "best.pt",
                    trainee.deployed(),
                    {**trainee.meta, "epoch": epoch + 1, "best_validation_loss": best_record},
                )
            save_state(
                ckpt_path,
                {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "phase": opt_phase,
                    "epoch": epoch + 1,
                    "best_val": best_val,
                    "best_record": best_record,
                    "history": history,
                    "torch_rng": torch.get_rng_state(),
                },
            )
            write_metrics(out / "metrics.csv", history)
            log(
                f"epoch {epoch + 1}{' (' + name.strip() + ')' if multi else ''}: train {train_means['loss']:.4f}, "
                f"validation {val['loss']:.4f}{' (best)' if improved else ''}, "
                f"{row[f'{ep.unit}_per_s']} {ep.unit}/s"
            )
        epochs_run += 1
    if len(history) >= total and rank == 0:
        best = read_checkpoint(out / "checkpoints" / "best.pt")
        deploy = trainee.deployed()
        deploy.load_state_dict(best["state_dict"])
        meta = {
            **trainee.meta,
            "epochs": total,
            "best_epoch": best["meta"]["epoch"],
            "best_validation_loss": best_record,
        }
        if isinstance(meta.get("card"), dict):  # the model card records how it validated
            meta["card"] = {
                **meta["card"],
                "validation": {"best_validation_loss": best_record, "best_epoch": best["meta"]["epoch"]},
            }
        save_model(out / "model.pt", deploy, meta)
        log(f"done: model.pt holds the weights of epoch {best['meta']['epoch']} (validation {best_val:.4f})")
    barrier(world)
    return out
