"""The training of the image-to-image harmonizers, HAIL and IHF-Harmony:
``mrharmony structural train CONFIG --out RUN_DIR``.

Both train in two phases on crops of a structural dataset's training sites and subjects:
phase 1 trains a feature autoencoder (HAIL's own encoder and decoder; for IHF-Harmony the fixed
feature encoder of its losses, unless a VGG-19 weights file is given), phase 2 the method
itself with that encoder frozen. The run config is
:class:`~mrharmony.structural.config.StructuralRunConfig`; the ``model`` section is HAIL's
(``widths``, ``skips``, ``content_weight``, ``style_weight``, ``consistency_weight``:
:class:`~mrharmony.structural.hail.HAILConfig`) or IHF-Harmony's (``dims``, ``levels``,
``blocks``, ``anatomy_weight``, ``artefact_weight``, ``vgg_weights``, ...:
:class:`~mrharmony.structural.ihf.IHFConfig`).

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
``dims: 2`` the crops are single slices (``crop_size`` x ``crop_size``, or with ``crop_size: slice``
whole slices) and the networks 2D; ``lr_schedule: cosine`` decays phase 2's learning rate to 0.

Both train through the one training loop of :mod:`mrharmony.engine.loop`, which keeps the run
directory (``config.yaml``, ``log.txt``, ``metrics.csv``, ``split.json``,
``checkpoints/last.pt`` for resuming, ``checkpoints/best.pt``: lowest phase-2 validation loss,
and ``model.pt``); this module plugs in the image trainee. The crops of epoch e come from a
generator seeded by ``(seed, e)``, the validation triplets from ``(seed, 2)``, so that a resumed
run ends with the weights of an uninterrupted one on the CPU. What differs between HAIL and
IHF-Harmony (the module each trains, what trains in phase 2, its losses, what is deployed) is
said by the method's config model.

Under torchrun (``torchrun --nproc_per_node N -m mrharmony structural train ...``) every process
draws the same global batch of triplets and trains on its share of it, and the gradients are
averaged over the processes before each step (the batch size must divide evenly); only rank 0
writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrharmony.config import relative_path
from mrharmony.engine.loop import Epoch, Machine, Phase, RunFamily, Trainee
from mrharmony.errors import InputError
from mrharmony.structural.config import (
    StructuralRunConfig,
    load_structural_config,
    resolved_structural_config,
    split_subjects,
)
from mrharmony.structural.crops import CropSampler, load_images
from mrharmony.structural.harmonizer import TrainedImageHarmonizer


def torch_batch(batch: dict, device, dims: int = 3) -> dict:
    """Tensors on ``device``; slices (N, 1, X, Y, 1) become (N, 1, X, Y) for 2D networks."""
    import torch

    return {k: torch.from_numpy(v if dims == 3 else v[..., 0]).to(device) for k, v in batch.items()}


def structural_card(cfg: StructuralRunConfig, ds, sites: list[str], split: dict, voxel_size) -> dict:
    """The model card of a HAIL or IHF-Harmony run (:mod:`mrharmony.engine.card`)."""
    from mrharmony.engine.card import make_card

    synthetic = bool(getattr(ds, "generated_by", None))
    limits = [
        "learned from the training sites listed; a site never seen in training is reached through its one "
        "target image, as far as the method generalizes",
        f"images are harmonized on the training images' grid ({' x '.join(f'{v:g}' for v in voxel_size)} mm); "
        "others are resampled to it and back",
        "research use: not validated for clinical decisions",
    ]
    if synthetic:
        limits.insert(0, "trained on synthetic data (mrharmony simulate): a demonstration, not a model for real scans")
    return make_card(
        wing="structural",
        method=cfg.model.method,
        variant=cfg.model.row_name(),
        training_data={
            "dataset": Path(cfg.data.dataset).name,
            "synthetic": synthetic,
            "sites": sites,
            "modalities": list(cfg.data.modalities),
            "voxel_size": list(voxel_size),
            "subjects_fitted_on": split["train"],
            "subjects_validation": split["validation"],
            "subjects_held_out": split["test"],
        },
        budget=cfg.training.model_dump(mode="json"),
        seed=cfg.training.seed,
        intended_use="harmonizing structural images (the modalities listed) to the site of one target image, so "
        "that group studies can pool them",
        limits="; ".join(limits),
    )


class ImageTrainee(Trainee):
    """HAIL or IHF-Harmony on triplets of crops (see the module docstring)."""

    def __init__(self, cfg: StructuralRunConfig, out: Path, machine: Machine, *, source, quiet: bool):
        import torch

        from mrharmony import __version__
        from mrharmony.data.structural import load_structural
        from mrharmony.engine.checkpoint import parameter_count

        self.cfg, self.machine = cfg, machine
        ds = load_structural(cfg.data.dataset)
        sites = cfg.data.sites or ds.train_sites
        for site in sites:
            if site not in ds.site_names:
                raise InputError(
                    f"names site {site!r}, which the dataset does not have ({', '.join(ds.site_names)}).", source
                )
            if site in ds.unseen_sites:
                raise InputError(f"names site {site!r}, which the dataset holds out of training (role unseen).", source)
        for m in cfg.data.modalities:
            if m not in ds.modalities:
                raise InputError(f"asks for modality {m!r}; the dataset has {', '.join(ds.modalities)}.", source)
        if cfg.training.batch_size % machine.world:
            raise InputError(
                f"sets batch_size {cfg.training.batch_size}, which the {machine.world} processes cannot share evenly.",
                source,
            )
        c = cfg.data.crop_size
        self.dims = cfg.model.spatial_dims()
        whole = c == "slice"
        if whole and self.dims != 2:
            raise InputError(
                "sets crop_size: slice (whole slices), which only a 2D method trains on; give the crop's "
                "edge in voxels.",
                source,
            )
        if not whole:
            cfg.model.check_crop(c, source)
        self.split = split_subjects(ds.subjects, cfg.data, source)
        split = self.split
        images, masks = load_images(ds, split["train"] + split["validation"], sites, cfg.data.modalities, quiet)
        if whole:  # the largest slice of the images (to a size the method takes); smaller ones are zero-padded
            k = cfg.model.crop_multiple()
            crop = (*(-(-max(m.shape[i] for m in masks.values()) // k) * k for i in (0, 1)), 1)
        else:
            crop = (c, c, c) if self.dims == 3 else (c, c, 1)
        self.sampler = CropSampler(
            {s: images[s] for s in split["train"]}, {s: masks[s] for s in split["train"]}, crop, whole_slices=whole
        )
        val_s = CropSampler(
            {s: images[s] for s in split["validation"]},
            {s: masks[s] for s in split["validation"]},
            crop,
            whole_slices=whole,
        )
        tc = cfg.training
        vrng = np.random.default_rng([tc.seed, 2])
        self.val_batches = [val_s.triplets(vrng, tc.batch_size) for _ in range(tc.validation_batches)]
        torch.manual_seed(tc.seed)
        self.net = cfg.model.build().to(machine.device)
        self.sites = sites
        self.meta = {
            "mrharmony_version": __version__,
            "model": cfg.model.model_dump(mode="json"),
            "data": {**cfg.data.model_dump(mode="json"), "dataset": relative_path(cfg.data.dataset, out)},
            "training_sites": sites,
            "split": split,
            "parameter_count": parameter_count(self.deployed()),
            "normalization": "brain 99th percentile",
            "voxel_size": training_voxel_size(ds, split["train"][0], sites[0], cfg.data.modalities[0]),
        }
        self.meta["card"] = structural_card(cfg, ds, sites, split, self.meta["voxel_size"])
        self.phases = [
            Phase("autoencoder", tc.pretrain_epochs if cfg.model.pretrains() else 0, select_best=False),
            Phase("transfer", tc.epochs),
        ]

    def start_line(self) -> str:
        s = self.split
        return (
            f"{self.cfg.model.method} on {', '.join(self.sites)} ({', '.join(self.cfg.data.modalities)}); "
            f"{self.meta['parameter_count']} parameters; {len(s['train'])} training / {len(s['validation'])} "
            f"validation subjects ({len(s['test'])} held out)"
        )

    def split_record(self) -> dict:
        return self.split

    def deployed(self):
        return self.cfg.model.deployed(self.net)

    def optimizer(self, phase: int):
        """The autoencoder phase (0): every parameter; the transfer phase (1): what the method trains,
        the rest frozen."""
        import torch

        if phase == 0:
            for p in self.net.parameters():
                p.requires_grad_(True)
            return torch.optim.Adam(self.net.parameters(), lr=self.cfg.training.learning_rate), None
        trained, frozen = self.cfg.model.phase2_modules(self.net)
        for p in frozen.parameters():
            p.requires_grad_(False)
        for p in trained.parameters():
            p.requires_grad_(True)
        self.phase2_optimizer = torch.optim.Adam(trained.parameters(), lr=self.cfg.training.transfer_learning_rate)
        return self.phase2_optimizer, None

    def phase2_rate(self, epoch: float) -> float:
        """Phase 2's learning rate at a fractional epoch of the run (``lr_schedule``): constant, or
        a cosine decay from ``transfer_learning_rate`` to 0 over phase 2's epochs."""
        from mrharmony.engine.loop import cosine_decay

        tc = self.cfg.training
        if tc.lr_schedule == "constant":
            return tc.transfer_learning_rate
        return cosine_decay(tc.transfer_learning_rate, (epoch - self.phases[0].epochs) / max(self.phases[1].epochs, 1))

    def on_progress(self, epoch: float) -> None:
        opt = getattr(self, "phase2_optimizer", None)
        if opt is not None and epoch >= self.phases[0].epochs:  # set before every step of phase 2
            from mrharmony.engine.loop import set_learning_rate

            set_learning_rate(opt, self.phase2_rate(epoch))

    def epoch(self, epoch: int, phase: int) -> Epoch:
        tc = self.cfg.training
        rng = np.random.default_rng([tc.seed, epoch])

        m = self.machine
        local = tc.batch_size // m.world

        def batches():
            for _ in range(tc.steps_per_epoch):  # every process draws the global batch and takes its share
                triplets = self.sampler.triplets(rng, tc.batch_size)
                if m.world > 1:
                    triplets = {k: v[m.rank * local : (m.rank + 1) * local] for k, v in triplets.items()}
                yield torch_batch(triplets, m.device, self.dims)

        return Epoch(batches(), tc.steps_per_epoch, tc.batch_size, "triplets")

    def loss(self, model, batch, phase: int) -> dict:
        if phase == 0:
            x = batch["x"]
            loss = (model.reconstruct(x) - x).abs().mean()
            return {"loss": loss, "reconstruction": loss}
        return self.cfg.model.transfer_losses(model, batch)

    def validate(self, phase: int) -> dict[str, float]:
        import torch

        self.net.eval()
        sums: dict[str, float] = {}
        with torch.no_grad():
            for vb in self.val_batches:
                with self.machine.autocast():
                    losses = self.loss(self.net, torch_batch(vb, self.machine.device, self.dims), phase)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / len(self.val_batches) for k, v in sums.items()}


class ImageFamily(RunFamily):
    """The runs of the image methods (HAIL, IHF-Harmony)."""

    config_type = StructuralRunConfig
    #: trains under torchrun: each process takes its share of every global batch; the losses call
    #: the networks several times a step, so the gradients are averaged after the backward pass
    distributed = True
    gradient_sync = "all_reduce"

    def __init__(self, method: str | None = None):
        self.method = method

    def load_config(self, path):
        return load_structural_config(path)

    def resolved(self, cfg, run_dir: Path) -> dict:
        return resolved_structural_config(cfg, run_dir)

    def check(self, cfg, source) -> None:
        if self.method is not None and cfg.model.method != self.method:
            raise InputError(f"configures method {cfg.model.method!r}, not {self.method!r}.", source)

    def trainee(self, cfg, out: Path, machine: Machine, *, source, quiet: bool) -> Trainee:
        return ImageTrainee(cfg, out, machine, source=source, quiet=quiet)


def train_structural(
    config: StructuralRunConfig | str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    stop_after_epochs: int | None = None,
    method: str | None = None,
) -> Path:
    """Train HAIL or IHF-Harmony, whichever the config names, into the run directory ``out`` (see
    the module docstring and :func:`mrharmony.engine.loop.train`); ``method``, when given, is the
    one the config must name."""
    from mrharmony.engine.loop import train

    return train(
        ImageFamily(method), config, out, resume=resume, force=force, quiet=quiet, stop_after_epochs=stop_after_epochs
    )


def train_harmonizer(
    cls: type[TrainedImageHarmonizer],
    config: StructuralRunConfig | str | os.PathLike | None,
    out: str | os.PathLike,
    **options,
) -> TrainedImageHarmonizer | None:
    """Train the method of the harmonizer class ``cls`` (HAIL, IHF-Harmony) into the run directory
    ``out`` with :func:`train_structural` (``options``: its keyword arguments such as ``resume``,
    ``force``, ``quiet``); the config must name that method. Returns the trained harmonizer, or
    None when the run stopped before its end (resumable).

    Examples:
        >>> from mrharmony.structural.hail import HAILHarmonizer                       # doctest: +SKIP
        >>> h = train_harmonizer(HAILHarmonizer, "hail.yaml", "runs/hail", quiet=True)  # doctest: +SKIP
    """
    run = Path(train_structural(config, out, method=cls.method, **options))
    return cls.load(run) if (run / "model.pt").is_file() else None


def training_voxel_size(ds, subject: str, site: str, modality: str) -> list[float]:
    """Voxel size (mm) of the training images (the dataset's grid), which ``apply`` holds images to."""
    from mrharmony.data.images import voxel_size
    from mrharmony.data.structural import read_structural_image

    _, affine = read_structural_image(ds.image_path(subject, site, modality))
    return [round(float(v), 4) for v in voxel_size(affine)]
