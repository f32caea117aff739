"""``mrharmony bids BIDS_DIR OUTPUT_DIR group``: the cross-site summary of a BIDS App run.

After the participant level has harmonized the participants' scans into ``OUTPUT_DIR``, the
group level sets the sites side by side, as a study would before pooling them: for every dwi run
of the BIDS dataset (its site: the value of one BIDS entity, ``ses`` by default), the mean FA and
MD of a DTI fit (dipy) of the scan as acquired ("before"), and of the harmonized maps the
participant level wrote for it, per target platform ("after"); each in the brain and in its white
matter (FA >= 0.2 in the same map). It writes ``OUTPUT_DIR/group/``:

* ``regional.tsv``: one row per run, stage (before / after), target and region;
* ``summary.tsv``: per site, stage, target and region, the number of runs and the mean and
  standard deviation of FA and MD over them;
* ``fa_md_by_site.png``: white-matter FA and MD per site, before and after;
* ``group.json``: what was summarized, from where, with the resources the run was given
  (:func:`mrharmony.dmri.bids_app.app_resources`) and the container image it ran in.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError

WM_FA = 0.2  # white matter: FA at least this in the same map


def regional_means(fa: np.ndarray, md: np.ndarray, brain: np.ndarray) -> dict[str, tuple[float, float, int]]:
    """Mean FA and MD and the voxel count in the brain and in its white matter."""
    out = {}
    for region, m in (("brain", brain), ("white_matter", brain & (fa >= WM_FA))):
        if m.any():
            out[region] = (float(fa[m].mean()), float(md[m].mean()), int(m.sum()))
    return out


def run_group_level(
    bids_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    participants: list[str] | None = None,
    site_entity: str = "ses",
    force: bool = False,
    quiet: bool = False,
    resources: dict | None = None,
) -> Path:
    """Summarize the participant level's outputs across sites (see the module docstring);
    ``resources`` (e.g. ``{"n_cpus": 2, "mem_gb": 8}``) is recorded in ``group.json``."""
    from mrharmony.data.dataset import automatic_mask
    from mrharmony.data.gradients import read_gradients
    from mrharmony.data.images import read_float32, read_image
    from mrharmony.data.layouts import ENTITIES, find_brain_mask, open_bids
    from mrharmony.dmri.features.dti import dti_maps
    from mrharmony.io import check_new_file, container_record, staged_output_dir, write_json, write_text
    from mrharmony.progress import Progress

    root, out = Path(bids_dir).resolve(), Path(output_dir)
    if not (out / "dataset_description.json").is_file():
        raise InputError(
            "holds no participant-level outputs (no dataset_description.json); run the participant level first.", out
        )
    if site_entity not in ENTITIES:
        raise InputError(f"site entity {site_entity!r} is not one of {', '.join(ENTITIES)}.")
    check_new_file(out / "group", force=force)
    layout = open_bids(root)
    labels = [p.removeprefix("sub-") for p in participants] if participants else layout.get_subjects()
    unknown = sorted(set(labels) - set(layout.get_subjects()))
    if unknown:
        raise InputError(f"has no participant sub-{unknown[0]}.", root)
    files = [
        f
        for label in labels
        for f in layout.get(subject=label, suffix="dwi", extension=[".nii.gz", ".nii"], return_type="object")
    ]
    rows = []
    progress = Progress(total=len(files), unit="runs", desc="group", quiet=quiet)
    for f in files:
        dwi = Path(f.path)
        site = str(f.entities.get(ENTITIES[site_entity], "none"))
        label = f.entities["subject"]
        prefix = dwi.name.split(".")[0].removesuffix("_dwi")
        img = read_image(dwi)
        data = read_float32(img, dwi)
        bvals, bvecs = read_gradients(layout.get_bval(f.path), layout.get_bvec(f.path), n_volumes=int(img.shape[3]))
        mask_file = find_brain_mask(dwi, root)
        brain = (np.asanyarray(read_image(mask_file).dataobj) > 0) if mask_file else automatic_mask(data, bvals)
        fa, md, _ = dti_maps(data, bvals, bvecs, brain)
        base = {"participant": f"sub-{label}", "run": prefix, "site": site}
        for region, (v_fa, v_md, n) in regional_means(fa, md, brain).items():
            rows.append(
                {**base, "stage": "before", "target": "", "region": region, "fa": v_fa, "md": v_md, "voxels": n}
            )
        harmonized = out / dwi.parent.relative_to(root)
        for fa_file in sorted(harmonized.glob(f"{prefix}_space-*_model-tensor_param-fa_dwimap.nii.gz")):
            space = fa_file.name[len(prefix) + len("_space-") :].split("_", 1)[0]
            fa_h = read_float32(read_image(fa_file), fa_file)
            md_file = fa_file.with_name(fa_file.name.replace("param-fa", "param-md"))
            md_h = read_float32(read_image(md_file), md_file)
            for region, (v_fa, v_md, n) in regional_means(fa_h, md_h, md_h > 0).items():
                rows.append(
                    {**base, "stage": "after", "target": space, "region": region, "fa": v_fa, "md": v_md, "voxels": n}
                )
        progress.update(1)
    progress.close()
    if not any(r["stage"] == "after" for r in rows):
        raise InputError(
            "holds no harmonized FA / MD maps of these participants; run the participant level first.", out
        )
    summary = summarize(rows)
    with staged_output_dir(out / "group", force=force) as tmp:
        write_text(
            tmp / "regional.tsv",
            tsv(rows, ["participant", "run", "site", "stage", "target", "region", "fa", "md", "voxels"]),
        )
        write_text(
            tmp / "summary.tsv",
            tsv(summary, ["site", "stage", "target", "region", "runs", "fa_mean", "fa_sd", "md_mean", "md_sd"]),
        )
        figure(summary, tmp / "fa_md_by_site.png")
        write_json(
            tmp / "group.json",
            {
                "bids_dir": str(root),
                "site_entity": site_entity,
                "participants": [f"sub-{p}" for p in labels],
                "white_matter_fa": WM_FA,
                "runs": len(files),
                "resources": dict(resources or {}),
                "container": container_record(),
            },
        )
    return out / "group"


def summarize(rows: list[dict]) -> list[dict]:
    """Per site, stage, target and region: runs, mean and standard deviation of FA and MD."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["site"], r["stage"], r["target"], r["region"]), []).append(r)
    out = []
    for (site, stage, target, region), rs in sorted(groups.items()):
        fa, md = np.array([r["fa"] for r in rs]), np.array([r["md"] for r in rs])
        out.append(
            {
                "site": site,
                "stage": stage,
                "target": target,
                "region": region,
                "runs": len(rs),
                "fa_mean": float(fa.mean()),
                "fa_sd": float(fa.std(ddof=1)) if len(rs) > 1 else 0.0,
                "md_mean": float(md.mean()),
                "md_sd": float(md.std(ddof=1)) if len(rs) > 1 else 0.0,
            }
        )
    return out


def tsv(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    return "\t".join(columns) + "\n" + "".join("\t".join(cell(r[c]) for c in columns) + "\n" for r in rows)


def figure(summary: list[dict], path: Path) -> None:
    """White-matter FA and MD per site: before, and after per target (mean +- sd over runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wm = [s for s in summary if s["region"] == "white_matter"]
    keys = sorted({(s["stage"], s["target"]) for s in wm}, key=lambda k: (k[0] != "before", k[1]))
    sites = sorted({s["site"] for s in wm})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    width = 0.8 / max(1, len(keys))
    for ax, metric, unit in ((axes[0], "fa", ""), (axes[1], "md", " (mm^2/s)")):
        for i, (stage, target) in enumerate(keys):
            cells = {s["site"]: s for s in wm if (s["stage"], s["target"]) == (stage, target)}
            xs = [j + i * width for j, site in enumerate(sites) if site in cells]
            ys = [cells[site][f"{metric}_mean"] for site in sites if site in cells]
            es = [cells[site][f"{metric}_sd"] for site in sites if site in cells]
            ax.bar(xs, ys, width, yerr=es, label=stage if stage == "before" else f"after, to {target}")
        ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(sites))], sites)
        ax.set_title(f"white-matter {metric.upper()}{unit} by site")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
