"""Score harmonizers against the simulator's noiseless truth as well as the noisy target scans.

The patch MSE of Table 1 compares a prediction with the target platform's real (noisy) scan, so
every method pays the target's own noise, which no method can predict. On synthetic data the
truth without noise is known: each held-out subject's target scans are rendered again without
Rician noise (``mrharmony.simulate.render_scan``), fitted with the same SH settings, and
normalized with the noisy scan's own channel statistics, so that both truths are on the scale
of the predictions. Per method and target it reports, over the target's brain mask of the
held-out subjects, the normalized-SH MSE against the noisy scan (what ``evaluate`` reports as
the whole-volume SH error) and against the noiseless truth, per SH order, and the FA error of a
DTI fit against the noiseless scan's FA. A "noisy target" row scores the real target scan itself
against the noiseless truth: the noise floor.

Usage:
    python benchmarks/noiseless_truth.py RUN_DIR [RUN_DIR ...] --out FILE.json

The runs must share a dataset made by ``mrharmony simulate`` and a split by held-out subject
(a whole-volume score on a subject seen in training would not be a test result).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mrharmony.bench.summary import dump_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True, help="JSON file for the results")
    ap.add_argument(
        "--fa-voxels",
        type=int,
        default=30000,
        help="FA errors on this many seeded brain voxels per subject and target (DTI fits are slow)",
    )
    args = ap.parse_args()

    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import TargetReference, method_labels, shared_data_config
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.features.sh import sh_orders
    from mrharmony.dmri.loading import load_harmonizer

    loaded = [(load_harmonizer(r), r) for r in args.runs]
    runs = [r for h, r in loaded if h.predicts_sh]  # SH predictions only (not ComBat's DTI maps)
    hs = [h for h, _ in loaded if h.predicts_sh]
    data = shared_data_config(hs, runs)
    if data.split != "subject":
        raise SystemExit("the runs must be split by held-out subject.")
    names = method_labels(hs, runs)
    split = json.loads((Path(runs[0]) / "split.json").read_text())
    subjects = split["test_subjects"]
    ds = load_dataset(data.dataset, check_data=False, subjects=data.subjects)
    targets = [p.name for p in ds.target_platforms if any(p.name in h.targets for h in hs)]
    sums: dict = {}  # (row, target) -> running sums over voxels

    def add(row, t, err2, orders, fa_err):
        s = sums.setdefault((row, t), {"n": 0, "sq": np.zeros(err2.shape[1]), "fa": 0.0, "n_fa": 0})
        s["n"] += err2.shape[0]
        s["sq"] += err2.sum(axis=0)
        s["fa"] += float(np.abs(fa_err).sum())
        s["n_fa"] += fa_err.size

    t0 = time.perf_counter()
    for subject in subjects:
        f = load_features(ds, subject, ds.input_platform.name)
        preds = [h.predict(f) for h in hs]
        reference = TargetReference(ds, subject)  # the target scans and their noiseless truth, as evaluate reads them
        for t in targets:
            tf, (bvals, bvecs) = reference.scan(t)
            m = tf.mask
            truth = reference.noiseless_features(t)
            idx = np.flatnonzero(m)
            rng = np.random.default_rng(0)
            fm = np.zeros_like(m)
            fm.flat[np.sort(rng.choice(idx, min(args.fa_voxels, idx.size), replace=False))] = True
            # FA of every row through the evaluation's one path (raw coefficients -> signal on the
            # scan's gradient table -> DTI), the truth's and the noisy target's included
            fa_clean = reference.noiseless_dti(t, fm)[0][fm]
            fa_noisy = reference.dti(t, fm)[0][fm]
            orders = sh_orders(tf.sh.sh_order_max)
            add("noisy target", t, (tf.data[m] - truth[m]) ** 2, orders, fa_noisy - fa_clean)
            for name, h, pred in zip(names, hs, preds):
                if t not in pred:
                    continue
                y = h.target_coefficients(pred[t], t, m)  # raw coefficients, as the truth
                err_noisy = ((y[m] - tf.data[m]) ** 2).mean()
                fa_p = h.dti_of(pred[t], t, fm, gradients=(bvals, bvecs))[0][fm]
                add(name, t, (y[m] - truth[m]) ** 2, orders, fa_p - fa_clean)
                sums[(name, t)].setdefault("sq_noisy", 0.0)
                sums[(name, t)]["sq_noisy"] += float(err_noisy) * int(m.sum())
            print(f"{subject} {t} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    orders = sh_orders(hs[0].reference["sh"]["sh_order_max"])
    rows = []
    for (row, t), s in sums.items():
        per_channel = s["sq"] / s["n"]
        rows.append(
            {
                "method": row,
                "target": t,
                "mse_vs_noiseless": float(per_channel.mean()),
                "mse_vs_noisy": None if "sq_noisy" not in s else s["sq_noisy"] / s["n"],
                "mse_vs_noiseless_by_order": {
                    int(l): float(per_channel[orders == l].mean()) for l in sorted(set(orders.tolist()))
                },
                "fa_mae_vs_noiseless": s["fa"] / s["n_fa"],
            }
        )
    out = {"runs": [str(r) for r in runs], "subjects": subjects, "targets": targets, "rows": rows}
    dump_json(Path(args.out), out, indent=2)
    print(_markdown(rows, targets))


def _markdown(rows: list[dict], targets: list[str]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["target"]): r for r in rows}
    lines = [
        "| method | " + " | ".join(f"{t}: vs noisy / vs noiseless / FA MAE" for t in targets) + " |",
        "| --- |" + " --- |" * len(targets),
    ]
    for m in methods:
        cells = []
        for t in targets:
            r = by.get((m, t))
            if r is None:
                cells.append("")
                continue
            noisy = "" if r["mse_vs_noisy"] is None else f"{r['mse_vs_noisy']:.4f}"
            cells.append(f"{noisy} / {r['mse_vs_noiseless']:.4f} / {r['fa_mae_vs_noiseless']:.4f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
