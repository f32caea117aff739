"""The training engine of the image-to-image harmonizers: HAIL (``mrharmony structural train``)
and IHF-Harmony (``mrharmony flow train``).

Both train in two phases on crops of a structural dataset's training sites and subjects:
phase 1 trains a feature autoencoder (HAIL's own encoder and decoder; for IHF-Harmony the fixed
feature encoder of its losses, unless a VGG-19 weights file is given), phase 2 the method
itself with that encoder frozen. A run is one YAML config (validated on load, unknown keys are
errors); for HAIL::

    preset: demo                    # demo | full | test: defaults of the training section
    data:
      dataset: structural-demo      # a structural dataset (structural.yaml)
      modalities: [T1w]             # crops of these modalities (one drawn per triplet)
      sites: null                   # training sites; default: every site of role 'train'
      n_test_subjects: 2            # held out of training entirely (or test_subjects: [...])
      n_validation_subjects: 1
      crop_size: 48                 # training crops (voxels); whole volumes at apply time
    model:
      method: hail
      widths: [16, 32, 64]
      skips: true                   # AdaIN at every depth, U-Net decoder
      content_weight: 100.0
      style_weight: 100.0
      consistency_weight: 1.0
    training:
      pretrain_epochs: 6            # phase 1: the autoencoder
      epochs: 6                     # phase 2: the decoder, encoder frozen

and for IHF-Harmony ``model: {method: ihf, dims: 2, levels: 2, blocks: 3, anatomy_weight: ...,
artefact_weight: ..., vgg_weights: null}`` (:mod:`mrharmony.structural.ihf`).

HAIL: phase 1 trains encoder and decoder to reconstruct crops of the training sites (L1). Phase 2
freezes the encoder and trains the decoder on triplets drawn from the training subjects: an
input crop (subject a, site i), a style crop of another subject on another site (b, j), and a
crop of another subject on the input's own site (c, i); the loss is
``content_weight * content + style_weight * style + consistency_weight * consistency``
(:mod:`mrharmony.structural.hail`), the consistency term being the L1 distance between the input
and its harmonization to its own site. The three crops share their position relative to each
brain's bounding box, so that their statistics describe the same part of the brain. No image of
an unseen site and no image of a test subject is read; a subject's images on two sites are
never paired (one-shot: only the target's style is used).

IHF-Harmony: phase 2 trains the flow and the artefact encoder on the same triplets (input and
target of different subjects and sites: unpaired), with ``anatomy_weight * anatomy +
artefact_weight * artefact``: the self-similarity of the output's features at every depth
against the input's, and the channel statistics of the output's deepest features
(``artefact_levels``) against the target's. With
``dims: 2`` the crops are single slices (``crop_size`` x ``crop_size``) and the networks 2D.

The run directory is that of :mod:`mrharmony.dmri.training`: ``config.yaml``, ``log.txt``,
``metrics.csv``, ``split.json``, ``checkpoints/last.pt`` (resume), ``checkpoints/best.pt``
(lowest phase-2 validation loss) and ``model.pt``. The crops of epoch e come from a generator
seeded by ``(seed, e)``, the validation triplets from ``(seed, 2)``, so that a resumed run ends
with the weights of an uninterrupted one on the CPU.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from mrharmony import __version__
from mrharmony.config import StrictModel, dump_yaml, model_from_dict, read_run_yaml
from mrharmony.errors import InputError

PRESETS: dict[str, dict] = {
    "full": {"pretrain_epochs": 20, "epochs": 20, "steps_per_epoch": 100, "batch_size": 2},
    "demo": {"pretrain_epochs": 6, "epochs": 6, "steps_per_epoch": 40, "batch_size": 2},
    "test": {"pretrain_epochs": 1, "epochs": 1, "steps_per_epoch": 2, "batch_size": 1, "validation_batches": 1},
}


class StructuralDataConfig(StrictModel):
    dataset: str
    modalities: list[str] = Field(default_factory=lambda: ["T1w"], min_length=1)
    sites: list[str] | None = Field(default=None, description="training sites; default: every site of role train")
    test_subjects: list[str] | None = None
    n_test_subjects: int = Field(default=2, ge=0)
    n_validation_subjects: int = Field(default=1, ge=1)
    split_seed: int = 0
    crop_size: int = Field(default=48, ge=8)


class HAILModelConfig(StrictModel):
    method: Literal["hail"] = "hail"
    widths: tuple[int, ...] = Field(default=(16, 32, 64), min_length=2)
    skips: bool = Field(default=True, description="decoder gets every depth's restyled features (a U-Net)")
    content_weight: float = Field(default=100.0, ge=0)
    style_weight: float = Field(default=100.0, ge=0)
    consistency_weight: float = Field(default=1.0, ge=0)


class IHFModelConfig(StrictModel):
    method: Literal["ihf"] = "ihf"
    dims: Literal[2, 3] = 2
    levels: int = Field(default=2, ge=1, le=4)
    blocks: int = Field(default=3, ge=1)
    hidden: int = Field(default=32, ge=4)
    style_dim: int = Field(default=32, ge=2)
    anatomy_weight: float = Field(default=1.0, ge=0)
    artefact_weight: float = Field(default=10.0, ge=0)
    artefact_levels: int | None = Field(default=1, ge=1, description="deepest feature levels of the artefact "
                                                                      "loss (None: all)")
    widths: tuple[int, ...] = Field(default=(16, 32, 64), min_length=2,
                                    description="the self-trained feature encoder of the losses")
    vgg_weights: str | None = Field(default=None, description="a torchvision-style VGG-19 file (2D): the losses' "
                                                              "feature encoder instead of a self-trained one")

    @model_validator(mode="after")
    def _vgg_is_2d(self) -> IHFModelConfig:
        if self.vgg_weights and self.dims != 2:
            raise ValueError("vgg_weights needs dims: 2 (VGG-19 is a 2D network)")
        return self


class StructuralTrainingConfig(StrictModel):
    pretrain_epochs: int = Field(default=20, ge=0)
    epochs: int = Field(default=20, ge=1)
    steps_per_epoch: int = Field(default=100, ge=1)
    batch_size: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0, description="phase 1 (autoencoder)")
    transfer_learning_rate: float = Field(default=3e-4, gt=0, description="phase 2 (the method)")
    validation_batches: int = Field(default=8, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, ge=1)


class StructuralRunConfig(StrictModel):
    preset: Literal["full", "demo", "test"] | None = None
    data: StructuralDataConfig
    model: HAILModelConfig | IHFModelConfig = Field(discriminator="method")
    training: StructuralTrainingConfig = Field(default_factory=StructuralTrainingConfig)


def load_structural_config(path: str | os.PathLike) -> StructuralRunConfig:
    """Read a HAIL or IHF-Harmony run config; the preset fills the training keys the file does not
    set, and the dataset (and VGG weights) paths are taken from the config's folder."""
    raw = read_run_yaml(path, PRESETS)
    base = Path(path).resolve().parent
    data, model = raw.get("data"), raw.get("model")
    if not isinstance(model, dict) or model.get("method") not in ("hail", "ihf"):
        raise InputError("needs a 'model' section whose 'method' is hail or ihf.", path)
    if isinstance(data, dict) and isinstance(data.get("dataset"), str):
        raw["data"] = {**data, "dataset": str((base / data["dataset"]).resolve())}
    if isinstance(model, dict) and isinstance(model.get("vgg_weights"), str):
        raw["model"] = {**model, "vgg_weights": str((base / model["vgg_weights"]).resolve())}
    return model_from_dict(StructuralRunConfig, raw, source=path)


def split_subjects(subjects: list[str], data: StructuralDataConfig, source) -> dict[str, list[str]]:
    """Test, validation and training subjects (seeded by ``split_seed``)."""
    rng = np.random.default_rng([data.split_seed, 0])
    if data.test_subjects is not None:
        unknown = [s for s in data.test_subjects if s not in subjects]
        if unknown:
            raise InputError(f"names test subject {unknown[0]!r}, which the dataset does not have.", source)
        test = list(data.test_subjects)
    else:
        test = sorted(rng.choice(subjects, data.n_test_subjects, replace=False).tolist()) if data.n_test_subjects else []
    rest = [s for s in subjects if s not in test]
    if len(rest) < data.n_validation_subjects + 1:
        raise InputError(f"leaves {len(rest)} subject(s) after the {len(test)} test subject(s); training needs "
                         f"{data.n_validation_subjects + 1} (validation and training).", source)
    val = sorted(np.random.default_rng([data.split_seed, 1]).choice(rest, data.n_validation_subjects,
                                                                     replace=False).tolist())
    return {"test": test, "validation": val, "train": [s for s in rest if s not in val]}


class CropSampler:
    """Triplets of crops (input, style of another site, same site) from normalized images.

    ``images[subject][modality][site]`` are float32 volumes divided by their brain's 99th
    percentile, ``masks[subject]`` bool volumes. ``crop`` is the crop's shape: (c, c, c) for 3D
    networks, (c, c, 1) for slices.
    """

    def __init__(self, images: dict[str, dict[str, dict[str, np.ndarray]]], masks: dict[str, np.ndarray],
                 crop: tuple[int, int, int]):
        self.images, self.crop = images, np.asarray(crop)
        self.masks = {s: m.astype(np.float32) for s, m in masks.items()}  # once, not per crop
        self.subjects = sorted(images)
        first = next(iter(images.values()))
        self.modalities = list(first)
        self.sites = sorted(next(iter(first.values())))
        self.bbox = {}
        for s, m in masks.items():
            idx = np.argwhere(m)
            self.bbox[s] = (idx.min(0), idx.max(0) + 1)

    def _cut(self, vol: np.ndarray, subject: str, frac: np.ndarray) -> np.ndarray:
        lo, hi = self.bbox[subject]
        c = self.crop
        start = np.where(hi - lo > c, lo + np.round(frac * (hi - lo - c)).astype(int), lo - (c - (hi - lo)) // 2)
        out = np.zeros(tuple(c), np.float32)
        src = tuple(slice(max(a, 0), min(a + k, n)) for a, k, n in zip(start, c, vol.shape))
        dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, start))
        out[dst] = vol[src]
        return out

    def _pick(self, rng, options: list[str], avoid: str) -> str:
        rest = [o for o in options if o != avoid]
        return str(rng.choice(rest if rest else options))

    def triplets(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Arrays (n, 1, *crop): ``x``/``mx`` input, ``t``/``mt`` style (another subject and site),
        ``s``/``ms`` another subject on the input's site; all of one modality."""
        out: dict[str, list] = {k: [] for k in ("x", "mx", "t", "mt", "s", "ms")}
        for _ in range(n):
            a = str(rng.choice(self.subjects))
            i = str(rng.choice(self.sites))
            b, j = self._pick(rng, self.subjects, a), self._pick(rng, self.sites, i)
            c = self._pick(rng, self.subjects, a)
            frac = rng.random(3)
            mod = self.modalities[0] if len(self.modalities) == 1 else str(rng.choice(self.modalities))
            for key, subj, site in (("x", a, i), ("t", b, j), ("s", c, i)):
                out[key].append(self._cut(self.images[subj][mod][site], subj, frac))
                out["m" + key].append(self._cut(self.masks[subj], subj, frac))
        return {k: np.stack(v)[:, None] for k, v in out.items()}


def load_images(ds, subjects: list[str], sites: list[str], modalities: list[str], quiet: bool = True):
    """Normalized images and masks of ``subjects`` on ``sites`` (see :class:`CropSampler`)."""
    from mrharmony.structural.hail import brain_scale
    from mrharmony.progress import Progress

    images, masks = {}, {}
    bar = Progress(total=len(subjects) * len(sites) * len(modalities), unit="images", desc="read images",
                   quiet=quiet)
    for s in subjects:
        images[s] = {m: {} for m in modalities}
        for m in modalities:
            for site in sites:
                img, _ = ds.load_image(s, site, m)
                if s not in masks:
                    masks[s] = ds.load_mask(s, img)
                if img.shape != masks[s].shape:
                    raise InputError(f"has shape {img.shape} but the subject's mask has {masks[s].shape}.",
                                     ds.image_path(s, site, m))
                images[s][m][site] = (img / brain_scale(img, masks[s])).astype(np.float32)
                bar.update(1)
    bar.close()
    return images, masks


def build_trainee(model_cfg):
    """The module a run trains, from its model config: HAIL, or IHF-Harmony's
    :class:`~mrharmony.structural.ihf.IHFTrainee`."""
    from mrharmony.structural.hail import HAIL

    if model_cfg.method == "hail":
        return HAIL(tuple(model_cfg.widths), model_cfg.skips)
    from mrharmony.structural.ihf import IHFTrainee, load_vgg_weights

    vgg = load_vgg_weights(model_cfg.vgg_weights) if model_cfg.vgg_weights else None
    return IHFTrainee(model_cfg.dims, model_cfg.levels, model_cfg.blocks, model_cfg.hidden, model_cfg.style_dim,
                      tuple(model_cfg.widths), vgg)


def _phase2_losses(net, batch: dict, model_cfg) -> dict:
    if model_cfg.method == "ihf":
        from mrharmony.structural.ihf import ihf_losses

        return ihf_losses(net, batch, anatomy_weight=model_cfg.anatomy_weight,
                          artefact_weight=model_cfg.artefact_weight, artefact_levels=model_cfg.artefact_levels)
    from mrharmony.structural.hail import consistency_loss, content_loss, style_loss

    x, mx, t, mt, s, ms = (batch[k] for k in ("x", "mx", "t", "mt", "s", "ms"))
    pred, ada, tfeats = net.transfer(x, t, mx, mt)
    pfeats = net.encoder(pred)
    content = content_loss(pfeats, ada)
    style = style_loss(pfeats, tfeats, mx, mt)
    same, _, _ = net.transfer(x, s, mx, ms)
    consistency = consistency_loss(same, x, mx)
    total = (model_cfg.content_weight * content + model_cfg.style_weight * style
             + model_cfg.consistency_weight * consistency)
    return {"loss": total, "content": content, "style": style, "consistency": consistency}


def _phase1_loss(net, batch: dict) -> dict:
    x = batch["x"]
    loss = (net.reconstruct(x) - x).abs().mean()
    return {"loss": loss, "reconstruction": loss}


_PHASES = {1: "autoencoder", 2: "transfer"}
TRAIN_COMMANDS = {"hail": "structural train", "ihf": "flow train"}


def _torch_batch(batch: dict, device, dims: int = 3) -> dict:
    """Tensors on ``device``; slices (N, 1, X, Y, 1) become (N, 1, X, Y) for 2D networks."""
    import torch

    return {k: torch.from_numpy(v if dims == 3 else v[..., 0]).to(device) for k, v in batch.items()}


def deployed(net, model_cfg):
    """The part of a trainee that applying needs, saved as ``model.pt``: all of HAIL; the flow
    and artefact encoder of IHF-Harmony (not the feature encoder of its losses)."""
    return net if model_cfg.method == "hail" else net.ihf


def _optimizer(net, cfg: StructuralRunConfig, phase: int):
    """Phase 1: every parameter (the autoencoder); phase 2: HAIL's decoder, or IHF's flow and
    artefact encoder, the rest frozen."""
    import torch

    if phase == 1:
        for p in net.parameters():
            p.requires_grad_(True)
        return torch.optim.Adam(net.parameters(), lr=cfg.training.learning_rate)
    trained = net.decoder if cfg.model.method == "hail" else net.ihf
    frozen = net.encoder if cfg.model.method == "hail" else net.features
    for p in frozen.parameters():
        p.requires_grad_(False)
    for p in trained.parameters():
        p.requires_grad_(True)
    return torch.optim.Adam(trained.parameters(), lr=cfg.training.transfer_learning_rate)


def train_structural(config: StructuralRunConfig | str | os.PathLike | None, out: str | os.PathLike, *,
                     resume: bool = False, force: bool = False, quiet: bool = False,
                     stop_after_epochs: int | None = None, method: str | None = None) -> Path:
    """Train HAIL or IHF-Harmony into the run directory ``out`` (see the module docstring);
    ``method``, when given, is the one the config must name (each command trains its own)."""
    import torch

    from mrharmony.data.structural import load_structural
    from mrharmony.engine.checkpoint import parameter_count, read_checkpoint, save_model, save_state
    from mrharmony.progress import Progress
    from mrharmony.dmri.training import (
        _check_new_run_dir,
        _device,
        _Log,
        _new_run_dir,
        _write_metrics,
    )

    out = Path(out)
    ckpt_path = out / "checkpoints" / "last.pt"
    if resume:
        if not ckpt_path.is_file():
            raise InputError("has no checkpoint to resume from (checkpoints/last.pt is missing).", out)
        saved = load_structural_config(out / "config.yaml")
        if config is not None:
            given = config if isinstance(config, StructuralRunConfig) else load_structural_config(config)
            if _resolved(given, out) != _resolved(saved, out):
                raise InputError("differs from the config of the run being resumed; resume without a config or "
                                 "with the same one.", out)
        cfg = saved
    else:
        if config is None:
            raise InputError("a config is needed to start a run.")
        cfg = config if isinstance(config, StructuralRunConfig) else load_structural_config(config)
    source = out / "config.yaml" if resume else (config if isinstance(config, (str, os.PathLike)) else out)
    if method is not None and cfg.model.method != method:
        raise InputError(f"configures method {cfg.model.method!r}; train it with 'mrharmony "
                         f"{TRAIN_COMMANDS[cfg.model.method]}'.", source)
    if not resume:
        _check_new_run_dir(out, force)
    tc = cfg.training
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = _device(tc)
    ds = load_structural(cfg.data.dataset)
    sites = cfg.data.sites or ds.train_sites
    for site in sites:
        if site not in ds.site_names:
            raise InputError(f"names site {site!r}, which the dataset does not have ({', '.join(ds.site_names)}).",
                             source)
        if site in ds.unseen_sites:
            raise InputError(f"names site {site!r}, which the dataset holds out of training (role unseen).", source)
    for m in cfg.data.modalities:
        if m not in ds.modalities:
            raise InputError(f"asks for modality {m!r}; the dataset has {', '.join(ds.modalities)}.", source)
    dims = 3 if cfg.model.method == "hail" else cfg.model.dims
    c = cfg.data.crop_size
    if cfg.model.method == "ihf" and c % 2**cfg.model.levels:
        raise InputError(f"sets crop_size {c}, which the flow's {cfg.model.levels} squeezes cannot halve; "
                         f"use a multiple of {2**cfg.model.levels}.", source)
    split = split_subjects(ds.subjects, cfg.data, source)
    log = _Log(out / "log.txt", quiet)
    images, masks = load_images(ds, split["train"] + split["validation"], sites, cfg.data.modalities, quiet)
    crop = (c, c, c) if dims == 3 else (c, c, 1)
    train_s = CropSampler({s: images[s] for s in split["train"]}, {s: masks[s] for s in split["train"]}, crop)
    val_s = CropSampler({s: images[s] for s in split["validation"]}, {s: masks[s] for s in split["validation"]},
                        crop)
    vrng = np.random.default_rng([tc.seed, 2])
    val_batches = [val_s.triplets(vrng, tc.batch_size) for _ in range(tc.validation_batches)]

    torch.manual_seed(tc.seed)
    net = build_trainee(cfg.model).to(device)
    deploy = deployed(net, cfg.model)
    meta = {"mrharmony_version": __version__, "model": cfg.model.model_dump(mode="json"),
            "data": {**cfg.data.model_dump(mode="json"),
                     "dataset": os.path.relpath(Path(cfg.data.dataset).resolve(), out.resolve())},
            "training_sites": sites, "split": split, "parameter_count": parameter_count(deploy),
            "normalization": "brain 99th percentile"}
    # a VGG-19 from a file needs no phase 1
    pretrain = 0 if getattr(cfg.model, "vgg_weights", None) else tc.pretrain_epochs
    total_epochs = pretrain + tc.epochs
    start, history, best_val = 0, [], math.inf
    if resume:
        ck = read_checkpoint(ckpt_path)
        net.load_state_dict(ck["model"])
        start, history, best_val = ck["epoch"], ck["history"], ck["best_val"]
        opt_phase = ck["optimizer_phase"]
        opt = _optimizer(net, cfg, opt_phase)
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from epoch {start}")
    else:
        _new_run_dir(out, force)
        (out / "config.yaml").write_text(dump_yaml(_resolved(cfg, out)))
        from mrharmony.io import write_json

        write_json(out / "split.json", split)
        log(f"mrharmony {__version__}: {cfg.model.method} on {', '.join(sites)} ({', '.join(cfg.data.modalities)}); {meta['parameter_count']} parameters; "
            f"{len(split['train'])} training / {len(split['validation'])} validation subjects "
            f"({len(split['test'])} held out); device {device}")
        opt_phase = 1 if pretrain else 2
        opt = _optimizer(net, cfg, opt_phase)
    epochs_run = 0
    for epoch in range(start, total_epochs):
        if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
            break
        phase = 1 if epoch < pretrain else 2
        if phase != opt_phase:  # phase 2 starts: feature encoder frozen, a new optimizer
            opt, opt_phase = _optimizer(net, cfg, phase), phase
        t0 = time.perf_counter()
        rng = np.random.default_rng([tc.seed, epoch])
        net.train()
        sums: dict[str, float] = {}
        bar = Progress(total=tc.steps_per_epoch, unit="steps",
                       desc=f"{_PHASES[phase]} epoch {epoch + 1}/{total_epochs}",
                       quiet=quiet)
        for _ in range(tc.steps_per_epoch):
            batch = _torch_batch(train_s.triplets(rng, tc.batch_size), device, dims)
            opt.zero_grad(set_to_none=True)
            losses = _phase1_loss(net, batch) if phase == 1 else _phase2_losses(net, batch, cfg.model)
            losses["loss"].backward()
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.update(1)
        bar.close()
        net.eval()
        vsums: dict[str, float] = {}
        with torch.no_grad():
            for vb in val_batches:
                vb = _torch_batch(vb, device, dims)
                vl = _phase1_loss(net, vb) if phase == 1 else _phase2_losses(net, vb, cfg.model)
                for k, v in vl.items():
                    vsums[k] = vsums.get(k, 0.0) + float(v)
        row = {"epoch": epoch + 1, "phase": phase,
               **{f"train_{k}": v / tc.steps_per_epoch for k, v in sums.items()},
               **{f"val_{k}": v / len(val_batches) for k, v in vsums.items()},
               "seconds": round(time.perf_counter() - t0, 2)}
        history.append(row)
        improved = phase == 2 and row["val_loss"] < best_val
        if improved:
            best_val = row["val_loss"]
            save_model(out / "checkpoints" / "best.pt", deploy, {**meta, "epoch": epoch + 1,
                                                              "best_validation_loss": best_val})
        save_state(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                          "optimizer_phase": opt_phase, "epoch": epoch + 1, "best_val": best_val,
                                          "history": history, "torch_rng": torch.get_rng_state()})
        _write_metrics(out / "metrics.csv", _uniform_rows(history))
        log(f"epoch {epoch + 1} ({_PHASES[phase]}): train {row['train_loss']:.4f}, "
            f"validation {row['val_loss']:.4f}{' (best)' if improved else ''}, {row['seconds']} s")
        epochs_run += 1
    if len(history) >= total_epochs:
        best = read_checkpoint(out / "checkpoints" / "best.pt")
        deploy.load_state_dict(best["state_dict"])
        save_model(out / "model.pt", deploy, {**meta, "epochs": total_epochs, "best_epoch": best["meta"]["epoch"],
                                           "best_validation_loss": best_val})
        log(f"done: model.pt holds the weights of epoch {best['meta']['epoch']} (validation {best_val:.4f})")
    return out


def _uniform_rows(history: list[dict]) -> list[dict]:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    return [{k: row.get(k, "") for k in keys} for row in history]


def _resolved(cfg: StructuralRunConfig, run_dir: Path) -> dict:
    out = cfg.model_dump(mode="json")
    out["data"]["dataset"] = os.path.relpath(Path(cfg.data.dataset).resolve(), Path(run_dir).resolve())
    return out


def train_or_resume(config: dict, run: str | os.PathLike, *, quiet: bool = True) -> Path:
    """A finished run as it is, an interrupted one resumed, else a new one trained from the
    ``config`` mapping (written beside the run as ``<run>.yaml``): for benchmarks and the demo."""
    import yaml

    run = Path(run)
    if (run / "model.pt").is_file():
        return run
    if (run / "checkpoints" / "last.pt").is_file():
        return train_structural(None, run, resume=True, quiet=quiet)
    path = run.with_name(run.name + ".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return train_structural(path, run, quiet=quiet, force=True)
