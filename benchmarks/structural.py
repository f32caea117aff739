"""The structural benchmark: HAIL and IHF-Harmony against the intensity baselines as practice
runs them, judged by what studies measure, with goals declared before the run.

On the synthetic multi-site data (``mrharmony simulate --kind structural``: sites from signal
equations, a rescan of every subject on every site):

1. trained on the training sites and subjects: HAIL, the paper's model (``hail``), its U-Net
   variant (``hail_unet``) and its residual variant (``hail_residual``), on T1w; IHF-Harmony's paper flow (``ihf``) and its exactly invertible
   variants (``ihf_squeeze``, ``ihf_residual``), 2D, on T1w, T2w and FLAIR (the recipes of
   ``benchmarks/hail.py`` and ``benchmarks/flow.py``);
2. every test subject (the split's and more people simulated beside the data, never seen in
   training: at least six at the ``cpu`` budget) harmonized from each site to each other site by
   those and by ``none``, ``zscore``, ``whitestripe``, ``nyul`` and the same after N4 bias-field
   correction; the one target image of a site is the validation subject's image on it; scored by
   :func:`mrharmony.structural.evaluate.compare_harmonizers` beside the truth and the rescan rows
   (per modality, each modality's rows kept in ``DIR/rows-<modality>.json`` so that a stopped run
   scores only what is left);
3. the goals of :mod:`mrharmony.bench.structural_goals` on the declared rows ``hail`` and
   ``ihf_residual`` (:data:`~mrharmony.bench.structural_goals.DECLARED`), per modality and group of
   site pairs, intervals over subjects and, where the budget trains the declared rows with more
   than one seed (``cpu``: two runs each), over training runs beside them;
4. what each method fixes of each effect: data whose sites differ in one effect alone
   (``--only-effect``: contrast, blur, noise, bias, ringing, ghosting), T1w, four site pairs, three
   test subjects; each method's residual is its 1 - SSIM against the truth over no harmonization's
   (1: nothing fixed, 0: the target site's image itself);
5. what each method keeps of what differs between people: three test subjects rendered on siteA
   twice with the same noise, once more atrophied (:func:`mrharmony.simulate.structural.atrophy_pair`),
   harmonized to siteB; per method and tissue (GM, CSF) the harmonized volume change over the
   input's (1: kept), beside the method's claim (``keeps_differences``).

With ``--budget 1mm`` the data are whole brains at 1 mm (the ``1mm`` preset): HAIL, the residual
flow, Nyul and N4 + Nyul on T1w, trained on 1 mm crops and applied to whole 1 mm volumes, one seen
(siteA to siteB) and one unseen pair (siteA to siteD) per test subject, and each method's time and
peak memory to harmonize one whole volume through ``structural apply`` in a process of its own
(also at ``smoke``, to check it).

Usage:
    python benchmarks/structural.py --budget {smoke,cpu,1mm} --out DIR [--record docs/results] [--jobs 2]

``smoke`` (tiny data, a few training steps, one effect) checks the pipeline in minutes; ``cpu`` is
the run whose summary is committed: ``--record docs/results`` writes
``docs/results/structural-cpu.json`` and ``.md`` (goals, summary tables, effects, training times,
the declared rows and the commit). Existing data, finished runs and scored modalities are reused;
interrupted training is resumed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mrharmony.bench.structural import add_jobs
from mrharmony.bench.structural_goals import DECLARED

BUDGETS = {
    "smoke": {
        "preset": "tiny",
        "training_preset": "test",
        "extra_test_subjects": 2,
        "hail": {"pretrain_epochs": 2, "epochs": 2, "steps_per_epoch": 4, "batch_size": 2},
        "hail_crop": 16,
        "ihf": {"pretrain_epochs": 1, "epochs": 2, "steps_per_epoch": 4, "batch_size": 4},
        "ihf_crop": 16,
        "modalities": ["T1w"],
        "effects": ["blur"],
        "resources": True,
        "seeds": [0, 1],
    },
    "cpu": {
        "preset": "demo",
        "training_preset": "demo",
        "extra_test_subjects": 5,
        "hail": {"pretrain_epochs": 12, "epochs": 12},
        "hail_crop": None,
        "ihf": {"batch_size": 8, "pretrain_epochs": 20, "epochs": 40},
        "ihf_crop": 64,
        "modalities": ["T1w", "T2w", "FLAIR"],
        "effects": ["contrast", "blur", "noise", "bias", "ringing", "ghosting"],
        "seeds": [0, 1],
    },
    # the resolution studies scan T1w at: the declared rows and Nyul, trained on 1 mm crops and applied
    # to whole 1 mm volumes, one seen and one unseen pair per test subject, with apply time and memory
    "1mm": {
        "preset": "1mm",
        "training_preset": "demo",
        "extra_test_subjects": 5,
        "hail": {"pretrain_epochs": 12, "epochs": 12},
        "hail_crop": None,
        "ihf": {"batch_size": 8, "pretrain_epochs": 20, "epochs": 40},
        "ihf_crop": 64,
        "modalities": ["T1w"],
        "effects": [],
        "rows": ["hail", "ihf_residual"],
        "baselines": ["none", "nyul", "n4_nyul"],
        "pairs": [("siteA", "siteB"), ("siteA", "siteD")],
        "resources": True,
        "seeds": [0],
    },
}
BASELINES = ["none", "zscore", "whitestripe", "nyul", "n4_zscore", "n4_whitestripe", "n4_nyul"]
EFFECT_PAIRS = [("siteA", "siteB"), ("siteB", "siteA"), ("siteA", "siteD"), ("siteD", "siteA")]


def train_all(out: Path, data: Path, budget: dict) -> tuple[dict, dict, dict]:
    """The trained rows, the further training runs of the declared rows (``<row>_seed<k>``, trained
    with the budget's further seeds) and every run's training seconds."""
    from mrharmony.bench.structural import train_or_resume
    from mrharmony.structural.hail import HAILHarmonizer
    from mrharmony.structural.ihf import IHFHarmonizer

    models, seconds = {}, {}
    hail_data = {"dataset": str(data.resolve()), "modalities": ["T1w"]}
    if budget["hail_crop"]:
        hail_data["crop_size"] = budget["hail_crop"]
    ihf_data = {"dataset": str(data.resolve()), "modalities": budget["modalities"], "crop_size": budget["ihf_crop"]}
    plans = [
        ("hail", HAILHarmonizer, hail_data, {"method": "hail"}, budget["hail"]),
        (
            "hail_unet",
            HAILHarmonizer,
            hail_data,
            {"method": "hail", "skips": True, "widths": [16, 32, 64]},
            budget["hail"],
        ),
        ("hail_residual", HAILHarmonizer, hail_data, {"method": "hail", "residual": True}, budget["hail"]),
        ("ihf", IHFHarmonizer, ihf_data, {"method": "ihf", "flow": "hierarchy"}, budget["ihf"]),
        ("ihf_squeeze", IHFHarmonizer, ihf_data, {"method": "ihf", "flow": "squeeze"}, budget["ihf"]),
        ("ihf_residual", IHFHarmonizer, ihf_data, {"method": "ihf", "flow": "residual"}, budget["ihf"]),
    ]
    seeds = budget["seeds"]
    runs = {}
    for name, cls, data_cfg, model, training in plans:
        if name not in budget.get("rows", [p[0] for p in plans]):
            continue
        for seed in seeds if name in DECLARED.values() else seeds[:1]:
            row = name if seed == seeds[0] else f"{name}_seed{seed}"
            t0 = time.perf_counter()
            config = {
                "preset": budget["training_preset"],
                "data": data_cfg,
                "model": model,
                "training": {**training, "seed": seed},
            }
            h = train_or_resume(cls, config, out / f"run-{row}")
            h.name = row
            (models if row == name else runs)[row] = h
            seconds[row] = round(time.perf_counter() - t0, 1)
    first = models["hail"]
    for h in [*models.values(), *runs.values()]:
        if h.split != first.split or h.training_sites != first.training_sites:
            raise SystemExit(f"{h.model_file} was trained on another split or other sites than {first.model_file}.")
    for name, h in [*models.items(), *runs.items()]:
        if name.startswith("hail"):
            h.modalities = ["T1w"]
    return models, runs, seconds


def score(out: Path, scored, split, rows_of: list, modalities: list[str], jobs: int, pairs=None) -> list[dict]:
    """Every modality's rows, each kept in ``out/rows-<modality>.json`` once scored (and scored again
    where a method of ``rows_of`` has no rows there)."""
    from mrharmony.io import write_text
    from mrharmony.structural.evaluate import compare_harmonizers

    rows = []
    names = {getattr(m, "name", m) for m in rows_of}
    for modality in modalities:
        path = out / f"rows-{modality}.json"
        # rows scored before a method joined the run are scored again, every method with them
        if not path.is_file() or not names <= {r["method"] for r in json.loads(path.read_text())}:
            ev = compare_harmonizers(
                scored,
                rows_of,
                modalities=[modality],
                reference="hail" if modality == "T1w" else DECLARED["ihf"],
                split=split,
                pairs=pairs,
                jobs=jobs,
            )
            write_text(path, json.dumps(ev.rows) + "\n")
        rows += json.loads(path.read_text())
    return rows


def effects(out: Path, budget: dict, args, models: dict, split: dict) -> list[dict]:
    """Each method's residual per effect (module docstring, step 4)."""
    from mrharmony.simulate.structural import simulate_structural
    from mrharmony.structural.evaluate import compare_harmonizers
    from mrharmony.structural.metrics import summarize

    table = []
    subjects = {"test": split["test"][:3], "validation": split["validation"]}
    n = max(int(s.split("-")[1]) for s in [*subjects["test"], *subjects["validation"]])
    for effect in budget["effects"]:
        data = out / f"effect-{effect}"
        if not (data / "structural.yaml").is_file():
            simulate_structural(
                data,
                preset=budget["preset"],
                seed=args.seed,
                n_subjects=n,
                only_effect=effect,
                rescans=False,
                quiet=True,
            )
        path = out / f"effect-{effect}.json"
        if not path.is_file():
            ev = compare_harmonizers(
                data,
                [*models.values(), *budget.get("baselines", BASELINES)],
                modalities=["T1w"],
                split=subjects,
                pairs=EFFECT_PAIRS,
                jobs=args.jobs,
            )
            path.write_text(json.dumps(summarize([r for r in ev.rows if r["method"] != "truth"])) + "\n")
        summary = json.loads(path.read_text())
        none = {r["group"]: r["ssim"] for r in summary if r["method"] == "none"}
        for r in summary:
            if r["method"] in ("none",) or r["group"] not in none:
                continue
            table.append(
                {
                    "effect": effect,
                    "group": r["group"],
                    "method": r["method"],
                    "ssim": r["ssim"],
                    "none_ssim": none[r["group"]],
                    "residual": (1 - r["ssim"]) / max(1 - none[r["group"]], 1e-12),
                }
            )
    return table


def atrophy_kept(scored, split: dict, models: dict, baselines: list[str], seed: int) -> list[dict]:
    """What each method keeps of an atrophy (module docstring, step 5): per method and tissue, the
    harmonized volume change over the input's, a mean over three test subjects."""
    from mrharmony.simulate.structural import atrophy_pair
    from mrharmony.stats import mean_ci
    from mrharmony.structural.evaluate import image_harmonizers
    from mrharmony.structural.metrics import volume_change

    ds = scored
    reference = split["validation"][0]
    target, target_mask = ds.load_image(reference, "siteB")[0], ds.load_mask(reference)
    ratios: dict[tuple[str, str], list[float]] = {}
    harmonizers = image_harmonizers([*models.values(), *baselines])
    for subject in split["test"][:3]:
        before, after, mask, _ = atrophy_pair(ds, subject, "siteA", seed=seed)
        change = volume_change(before, after, mask)
        for h in harmonizers:
            if not h.applies_to("T1w"):
                continue
            out = [h.transform(x, target=target, mask=mask, target_mask=target_mask).image for x in (before, after)]
            kept = volume_change(out[0], out[1], mask)
            for t in ("gm", "csf"):
                ratios.setdefault((h.name, t), []).append(kept[t] / change[t])
    return [
        {"method": m, "tissue": t, **mean_ci(v), "n": len(v), "claims_to_keep": bool(h.keeps_differences)}
        for (m, t), v in ratios.items()
        for h in harmonizers
        if h.name == m
    ]


#: run in a fresh process per method: apply it to one whole volume, print the seconds and the peak memory
PROBE = """
import json, resource, sys, time
import torch, SimpleITK, intensity_normalization.normalizers.population.nyul
from mrharmony.structural import loading, registry
from mrharmony.structural.apply import apply_image_model
model, image, target, mask, target_mask, out = sys.argv[1:]
imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
apply_image_model(model, input_path=image, target_path=target, out=out, mask_path=mask, target_mask_path=target_mask, force=True)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "imports_rss_mib": imports}))
"""


def apply_resources(out: Path, scored, split: dict, models: dict, baselines: list[str]) -> list[dict]:
    """Each method's time and peak memory to harmonize one whole volume (the first test subject's
    siteA image to siteB) through ``structural apply``, each in a fresh process: its peak resident
    memory, and what the process held after importing the libraries, before the work."""
    import subprocess
    import sys

    ds = scored
    subject, reference = split["test"][0], split["validation"][0]
    files = [
        ds.image_path(subject, "siteA"),
        ds.image_path(reference, "siteB"),
        ds.mask_path(subject),
        ds.mask_path(reference),
    ]
    shape = list(ds.load_image(subject, "siteA")[0].shape)
    table = []
    for name, spec in [*((n, str(h.model_file)) for n, h in models.items()), *((b, b) for b in baselines)]:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, spec, *map(str, files), str(out / "probe" / name)],
            capture_output=True,
            text=True,
            check=True,
        )
        table.append(
            {
                "method": name,
                "shape": shape,
                **json.loads(proc.stdout.splitlines()[-1]),
            }
        )
    return table


def markdown(summary: dict) -> str:
    from mrharmony.bench.structural_goals import goals_markdown
    from mrharmony.structural.metrics import markdown_table

    lines = [
        f"# Structural benchmark, budget `{summary['budget']}`",
        "",
        f"`{summary['command']}` at commit {summary['commit']} ({summary['machine']['cpus']} cores).",
        f"Declared rows (named in code before the run): {', '.join(f'{k}: `{v}`' for k, v in summary['declared'].items())}.",
        f"Test subjects: {len(summary['test_subjects'])}; intervals are 95% bootstrap intervals over them. The declared "
        f"rows were trained with the seeds {', '.join(map(str, summary['training_seeds']))} (the further runs are the "
        "rows `<row>_seed<k>`): a subject's value is its mean over the runs, and each goal has a Student-t interval "
        "over the runs beside the one over subjects.",
        "",
        "## Goals",
        "",
        goals_markdown(summary["goals"]),
        "## Each effect alone: residual 1 - SSIM over no harmonization's (T1w)",
        "",
        "| effect | pairs | method | SSIM | none's SSIM | residual |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for e in summary["effects"]:
        lines.append(
            f"| {e['effect']} | {e['group']} | {e['method']} | {e['ssim']:.3f} | {e['none_ssim']:.3f} | {e['residual']:.2f} |"
        )
    lines += [
        "",
        "## An atrophy kept: the harmonized volume change over the input's (T1w, siteA to siteB; 1 kept)",
        "",
        "| method | claims to keep | tissue | kept [95% interval] | subjects |",
        "| --- | --- | --- | --- | --- |",
    ]
    for a in summary["atrophy"]:
        lo, hi = a["ci95"]
        lines.append(
            f"| {a['method']} | {'yes' if a['claims_to_keep'] else 'no'} | {a['tissue']} | "
            f"{a['mean']:.2f} [{lo:.2f}, {hi:.2f}] | {a['n']} |"
        )
    if summary.get("resources"):
        lines += [
            "",
            "## One whole volume through `structural apply`, each method in a fresh process",
            "",
            "| method | volume | seconds | peak memory (MiB) | of which the imports |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in summary["resources"]:
            lines.append(
                f"| {r['method']} | {' x '.join(map(str, r['shape']))} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | "
                f"{r['imports_rss_mib']:.0f} |"
            )
    lines += ["", "## All rows", "", markdown_table(summary["summary"])]
    lines += ["Training seconds: " + ", ".join(f"{k} {v:g}" for k, v in summary["training_seconds"].items()), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", required=True, choices=sorted(BUDGETS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record", help="a folder for structural-<budget>.json and .md (e.g. docs/results)")
    add_jobs(ap)
    args = ap.parse_args()

    from mrharmony.bench.record import commit_of_checkout
    from mrharmony.bench.structural import evaluation_data, structural_data
    from mrharmony.bench.structural_goals import DECLARED, structural_goals
    from mrharmony.bench.summary import command, machine, write_summary
    from mrharmony.structural.metrics import summarize

    budget = BUDGETS[args.budget]
    out = Path(args.out)
    data, ds = structural_data(out, budget["preset"], args.seed)
    if not ds.rescans:
        raise SystemExit(f"{data} was simulated without second sessions (rescans); remove it and run again.")
    models, runs, seconds = train_all(out, data, budget)
    scored, split = evaluation_data(out, budget["preset"], args.seed, ds, models["hail"], budget["extra_test_subjects"])
    split = split or {
        "test": list(models["hail"].split["test"]),
        "validation": list(models["hail"].split["validation"]),
    }
    baselines = budget.get("baselines", BASELINES)
    rows = score(
        out,
        scored,
        split,
        [*models.values(), *runs.values(), *baselines],
        budget["modalities"],
        args.jobs,
        budget.get("pairs"),
    )
    if not hasattr(scored, "root"):
        from mrharmony.data.structural import load_structural

        scored = load_structural(scored)
    summary = {
        "budget": args.budget,
        "command": command("benchmarks/structural.py"),
        "commit": commit_of_checkout(Path(__file__).parent),
        "machine": machine(),
        "declared": DECLARED,
        "training_seeds": budget["seeds"],
        "test_subjects": split["test"],
        "one_shot_reference_subject": split["validation"][0],
        "training_sites": models["hail"].training_sites,
        "goals": structural_goals(rows),
        "effects": effects(out, budget, args, models, split),
        "atrophy": atrophy_kept(scored, split, models, baselines, args.seed),
        "resources": apply_resources(out, scored, split, models, baselines) if budget.get("resources") else [],
        "training_seconds": seconds,
        "summary": summarize(rows, extra_metrics=("texture_p2", "roundtrip")),
    }
    write_summary(Path(args.record) if args.record else out, f"structural-{args.budget}", summary, markdown(summary))


if __name__ == "__main__":
    main()
