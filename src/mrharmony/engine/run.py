"""The run directory of a training run, and the machine it runs on.

A run directory holds everything needed to trace a number back to a command: ``config.yaml``
(the resolved config), ``log.txt``, ``metrics.csv`` (one row per epoch), ``split.json``,
``checkpoints/last.pt`` (resume), ``checkpoints/best.pt`` and, at the end, ``model.pt``. It is
never overwritten without ``force``.

The machine: the device a config asks for (``auto``, ``cpu``, ``cuda``), bf16 autocast on a
GPU, and the process group when started by ``torchrun`` (distributed data parallel).

Runs record their data relative to themselves: :func:`relative_path` (from :mod:`mrharmony.config`,
where the configs' path settings are resolved and recorded) is importable from here too.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

from mrharmony.config import relative_path  # noqa: F401 (re-exported)
from mrharmony.errors import InputError


def check_new_run_dir(out: str | os.PathLike, force: bool) -> None:
    """Refuse a run directory that holds something, unless ``force``; nothing is created yet."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory; choose another run directory.", out)
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError("already exists and is not empty; pass --force to overwrite it, or --resume.", out)


def new_run_dir(out: str | os.PathLike, force: bool) -> None:
    """Create an empty run directory with its ``checkpoints`` folder (replacing one with ``force``)."""
    import shutil

    out = Path(out)
    check_new_run_dir(out, force)
    if out.exists():
        shutil.rmtree(out)
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot be created ({exc.strerror}).", out) from None


class RunLog:
    """Lines to the run's log.txt (none when ``path`` is None, e.g. on ranks other than 0), echoed
    on stderr unless quiet."""

    def __init__(self, path: Path | None, quiet: bool):
        self.path, self.quiet = path, quiet

    def __call__(self, text: str) -> None:
        if self.path is None:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}"
        with open(self.path, "a") as fh:
            fh.write(line + "\n")
        if not self.quiet:
            print(line, file=sys.stderr)


def write_metrics(path: Path, history: list[dict]) -> None:
    """``metrics.csv``: one row per epoch, the union of the rows' columns in order of appearance."""
    from mrharmony.io import atomic_path

    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, restval="")
        w.writeheader()
        w.writerows(history)


def select_device(device: str):
    """The torch device of a config's ``device`` (``auto``: the process's GPU if there is one)."""
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("the config asks for device 'cuda' but no GPU is available.")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def autocast(device, bf16: bool):
    """A context factory: bf16 autocast on a GPU when asked, else nothing."""
    import contextlib

    import torch

    if device.type == "cuda" and bf16:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def distributed() -> tuple[int, int]:
    """(rank, world size); initializes the process group when started by torchrun (CPU processes
    use gloo, GPUs NCCL unless ``MRHARMONY_DDP_BACKEND=gloo``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("MRHARMONY_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def mean_across_processes(value: float) -> float:
    """The mean of ``value`` over the processes of the group."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item() / dist.get_world_size())


def broadcast_parameters(module) -> None:
    """Give every process rank 0's parameters."""
    import torch.distributed as dist

    for p in module.parameters():
        dist.broadcast(p.data, src=0)


def average_gradients(module) -> None:
    """Replace each parameter's gradient by its mean over the processes (after the backward pass)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
