"""Benchmark of the foundation: simulate and prepare at full size, and patch sampling speed.

Measures, on this machine:

1. ``mrharmony simulate OUT --preset mushac``: wall time and peak memory (resident set of the
   whole process tree, sampled every 0.2 s);
2. ``mrharmony dmri prepare OUT``: the same;
3. patch sampling: minibatches of 12 (input 11^3 and every target) per second from the
   prepared data, against the time of one training step of a DIQT-sized network (3^3 conv to
   50, 1^3 conv to 100, 3^3 conv to 28 r^3 for each of the three targets, Adam, MSE) on the
   same machine, so the ratio says how many times faster sampling is than training needs.

Usage:
    python benchmarks/foundation.py --out bench-output [--preset mushac] [--keep]

Writes ``foundation.json`` in the output folder and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from mrharmony.bench.summary import dump_json


def _tree_rss_bytes(root_pid: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(cmd: list[str]) -> dict:
    """Run a command; return wall time and peak resident memory of its process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_bytes(proc.pid))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {rc}")
    return {"command": " ".join(cmd), "seconds": round(wall, 1), "peak_memory_gib": round(peak / 2**30, 2)}


def patch_rate(dataset: Path, *, n_batches: int = 200, batch: int = 12, seed: int = 0) -> dict:
    import numpy as np

    from mrharmony.data import load_dataset
    from mrharmony.dmri.patches import PatchSampler

    ds = load_dataset(dataset, check_data=False)
    t0 = time.perf_counter()
    sampler = PatchSampler.from_dataset(ds)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    sampler.batch(rng.integers(0, len(sampler), batch))  # warm-up
    t0 = time.perf_counter()
    for _ in range(n_batches):
        sampler.batch(rng.integers(0, len(sampler), batch))
    per_batch = (time.perf_counter() - t0) / n_batches
    step = training_step_seconds(sampler, batch=batch, seed=seed)
    return {
        "patches": len(sampler),
        "load_seconds": round(load_s, 1),
        "batch_size": batch,
        "sample_ms_per_batch": round(per_batch * 1e3, 2),
        "patch_sets_per_second": round(batch / per_batch),
        "training_step_ms": round(step * 1e3, 1),
        "sampling_speedup_over_training": round(step / per_batch, 1),
    }


def training_step_seconds(sampler, *, batch: int, seed: int, steps: int = 5) -> float:
    """Seconds per Adam step of DIQT-sized networks, one per target, on one minibatch."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    c = sampler.in_channels
    nets, losses_shape = {}, {}
    for t in sampler.target_names:
        r = sampler.geometry[t][0].ratio
        nets[t] = nn.Sequential(
            nn.Conv3d(c, 50, 3), nn.ReLU(), nn.Conv3d(50, 100, 1), nn.ReLU(), nn.Conv3d(100, c * r**3, 3)
        )
        losses_shape[t] = r
    params = [p for n in nets.values() for p in n.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)
    x_np, ys_np = sampler.batch(range(batch))
    x = torch.from_numpy(x_np)
    ys = {t: torch.from_numpy(v) for t, v in ys_np.items()}

    def step():
        opt.zero_grad()
        loss = 0.0
        for t, net in nets.items():
            out = net(x)  # valid convolutions: 7^3 x (c r^3)
            r = losses_shape[t]
            if r > 1:
                b, _, d, h, w = out.shape
                out = (
                    out.view(b, c, r, r, r, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c, d * r, h * r, w * r)
                )
            y = ys[t]
            m = (y.shape[-1] - out.shape[-1]) // 2
            loss = loss + torch.mean(
                (out - y[..., m : m + out.shape[-1], m : m + out.shape[-1], m : m + out.shape[-1]]) ** 2
            )
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-output", help="work folder (the dataset is written here)")
    ap.add_argument("--preset", default="mushac")
    ap.add_argument("--keep", action="store_true", help="keep the generated dataset")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"th-{args.preset}"
    exe = str(Path(sys.executable).parent / "mrharmony")
    res = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()}, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB)",
        "preset": args.preset,
    }
    res["simulate"] = run_measured([exe, "simulate", str(data), "--preset", args.preset, "--force", "--quiet"])
    res["prepare"] = run_measured([exe, "dmri", "prepare", str(data), "--quiet"])
    res["prepare_again_cached"] = run_measured([exe, "dmri", "prepare", str(data), "--quiet"])
    res["dataset_gib_on_disk"] = round(sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 2**30, 2)
    res["patches"] = patch_rate(data)
    dump_json(out / "foundation.json", res, indent=2)
    if not args.keep:
        shutil.rmtree(data)
    p = res["patches"]
    print(f"\nmachine: {res['machine']}, preset {args.preset}\n")
    print("| step | wall time | peak memory |\n| --- | --- | --- |")
    for k in ("simulate", "prepare", "prepare_again_cached"):
        print(f"| {k} | {res[k]['seconds']} s | {res[k]['peak_memory_gib']} GiB |")
    print(
        f"\npatch sampling: {p['sample_ms_per_batch']} ms per minibatch of {p['batch_size']} "
        f"({p['patch_sets_per_second']} patch sets/s, {p['patches']} patches); one DIQT training "
        f"step for all targets: {p['training_step_ms']} ms; sampling is "
        f"{p['sampling_speedup_over_training']}x faster than training needs."
    )


if __name__ == "__main__":
    main()
