"""Training throughput of every network, against the machine's measured 3D-convolution rate.

For each network of the MSP paper (the single networks at 1x and 2x, CPM, HNED and MSP over
three targets), on random 11^3 x 28 patches and targets of the right sizes (no data loading:
this measures the networks and the engine's step), it reports:

* patches per second of full training steps (forward, MSE loss, backward, Adam);
* FLOP/s reached, counting 2 multiply-adds per weight and output voxel for every convolution
  and deconvolution in the forward pass, times 3 for forward + backward;
* that rate as a fraction of the rate of a dense conv3d microbenchmark (64 -> 64 channels,
  3^3 kernel, forward + backward) run in the same process, same threads, same run, before and
  after the networks (the fraction uses the mean of the two).

Networks and inputs are in the channels-last 3D memory format, as the training engine runs them.

Usage:
    python benchmarks/training_speed.py [--batch 12] [--steps 20] [--device cpu|cuda] [--bf16]

Prints a Markdown table and writes it as JSON to --out (default bench-output/training_speed.json).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from mrharmony.bench.summary import dump_json
from mrharmony.dmri.networks.blocks import center_crop
from mrharmony.dmri.networks.msp import MSP
from mrharmony.dmri.networks.mtl import CPM, HNED
from mrharmony.dmri.networks.single import CNNRISH, DIQT, SHResNet

C, P = 28, 11
TARGETS = {"prisma_st": 1, "connectom_st": 1, "connectom_sa": 2}


def forward_flops(net: nn.Module, x: torch.Tensor) -> float:
    """Multiply-add FLOPs (x2) of the convolutions of one forward pass."""
    total = 0.0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.weight[0, 0].numel()
        if isinstance(mod, nn.ConvTranspose3d):
            total += 2.0 * inp[0].numel() / inp[0].shape[1] * mod.in_channels * mod.out_channels * k
        else:
            total += 2.0 * out.numel() * (mod.in_channels // mod.groups) * k

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return total


def step_rate(net, x, targets, *, steps: int, autocast) -> float:
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = net(x)
        loss = sum(
            torch.mean((o.float() - center_crop(targets[t], o.shape[-1])) ** 2) for t, outs in out.items() for o in outs
        )
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(x.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(x.device)
    return steps / (time.perf_counter() - t0)


def conv_rate(device, *, batch: int, autocast, steps: int) -> float:
    """FLOP/s of a dense conv3d, forward + backward (weights and input)."""
    conv = nn.Conv3d(64, 64, 3).to(device, memory_format=torch.channels_last_3d)
    x = torch.randn(batch, 64, 18, 18, 18, device=device).contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_(True)
    flops = 3 * 2.0 * batch * 16**3 * 64 * 64 * 27

    def run():
        with autocast():
            y = conv(x)
        y.float().sum().backward()

    for _ in range(3):
        run()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    _sync(device)
    return flops * steps / (time.perf_counter() - t0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def networks():
    yield "DIQT (1x)", lambda: DIQT("prisma_st", C, 1)
    yield "DIQT (2x)", lambda: DIQT("connectom_sa", C, 2)
    yield "CNN-RISH (1x)", lambda: CNNRISH("prisma_st", C, 1)
    yield "CNN-RISH (2x)", lambda: CNNRISH("connectom_sa", C, 2)
    yield "SHResNet (1x)", lambda: SHResNet("prisma_st", C, 1)
    yield "SHResNet (2x)", lambda: SHResNet("connectom_sa", C, 2)
    yield "CPM (3 targets)", lambda: CPM(TARGETS, C)
    yield "HNED (3 targets)", lambda: HNED(TARGETS, C)
    yield "MSP (3 x DIQT)", lambda: MSP({t: DIQT(t, C, r) for t, r in TARGETS.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (GPU)")
    ap.add_argument("--out", default="bench-output/training_speed.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    torch.manual_seed(0)
    ref = conv_rate(device, batch=args.batch, autocast=autocast, steps=args.steps)
    rows = []
    for name, make in networks():
        net = make().to(device, memory_format=torch.channels_last_3d)  # as the training engine runs it
        if isinstance(net, MSP):
            net.set_alpha(0.5)
        x = torch.randn(args.batch, C, P, P, P, device=device).contiguous(memory_format=torch.channels_last_3d)
        names = net.targets
        targets = {
            t: torch.randn(args.batch, C, P * TARGETS[t], P * TARGETS[t], P * TARGETS[t], device=device) for t in names
        }
        fl = 3 * forward_flops(net, x)
        rate = step_rate(net, x, targets, steps=args.steps, autocast=autocast)
        rows.append(
            {
                "network": name,
                "parameters": sum(p.numel() for p in net.parameters()),
                "patches_per_s": round(rate * args.batch, 1),
                "gflop_per_step": round(fl / 1e9, 2),
                "gflops": round(rate * fl / 1e9, 1),
                "flops": rate * fl,
            }
        )
    # the conv rate again at the end; fractions are of the mean of the two, and the spread says
    # how steady the machine was during the run
    ref_end = conv_rate(device, batch=args.batch, autocast=autocast, steps=args.steps)
    for r in rows:
        r["fraction_of_conv3d"] = round(r.pop("flops") / ((ref + ref_end) / 2), 2)
    res = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores) {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "bf16": args.bf16,
        "batch": args.batch,
        "conv3d_gflops_start": round(ref / 1e9, 1),
        "conv3d_gflops_end": round(ref_end / 1e9, 1),
        "networks": rows,
    }
    dump_json(Path(args.out), res, indent=2)
    print(
        f"\n{res['machine']}, torch {res['torch']}, {res['threads']} threads, device {device}, bf16 {args.bf16}, "
        f"batch {args.batch}; dense conv3d: {res['conv3d_gflops_start']} GFLOP/s (start), "
        f"{res['conv3d_gflops_end']} GFLOP/s (end)\n"
    )
    print(
        "| network | parameters | patches/s | GFLOP/step | GFLOP/s | fraction of conv3d |\n| --- | --- | --- | --- | --- | --- |"
    )
    for r in rows:
        print(
            f"| {r['network']} | {r['parameters']:,} | {r['patches_per_s']} | {r['gflop_per_step']} | {r['gflops']} | "
            f"{r['fraction_of_conv3d']} |"
        )


if __name__ == "__main__":
    main()
