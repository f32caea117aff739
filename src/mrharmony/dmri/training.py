"""Training the dMRI networks (DIQT, CNN-RISH, SHResNet, CPM, HNED, MSP) on the engine, and
fitting the statistical methods: ``mrharmony dmri train CONFIG --out RUN_DIR``.

The run config is :class:`~mrharmony.dmri.config.RunConfig`. A network trains through the one
training loop of :mod:`mrharmony.engine.loop`; what this module plugs in is the dMRI trainee:
patches of SH features (:class:`~mrharmony.dmri.patches.PatchSampler`), drawn for epoch e
from a generator seeded by ``(seed, e)`` among the training patches of the split; the loss, the
sum over targets (and, for the networks with deep supervision, over every supervised output) of
the patch MSE; the validation loss, the mean loss of the final predictions on the validation
patches (summed over targets). With ``training.tile_size`` (dense training, a variant of the
paper's recipe) the samples are tiles around the same centres and the loss covers every output
voxel of the tile inside the target's brain: a valid-convolution network answers each of them as
it would from that voxel's own patch, so the same function is trained with less repeated work;
validation still scores the centred patches. ``training.loss_weighting: order`` weighs every SH
order the same in the training loss instead of every channel (another named variant; validation
keeps the paper's loss); ``training.lr_schedule: cosine`` replaces the paper's step decay with a
warm-up and a cosine decay, set before every step. Adam with the learning rate divided by ``lr_decay_factor`` every
``lr_decay_every`` epochs; and the method's schedule (MSP's alpha). ``model.pt`` holds the
weights of the best validation loss with what rebuilds the network and what applying it to a
new scan needs (:func:`~mrharmony.dmri.harmonizer.platform_reference`).

Statistical methods (the registry's kind ``statistical``) take the same config and run
directory; they are fitted in one pass by :func:`mrharmony.dmri.statistical.fit_statistical`
(no epochs, checkpoints or resume).

Distributed data parallel: started with ``torchrun --nproc_per_node N``, each process takes
1/N of every global minibatch (``batch_size`` is global) and gradients are averaged, so the
result matches one process on the same global batch. Only rank 0 writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mrharmony.config import path_fields
from mrharmony.dmri.config import resolved_config
from mrharmony.dmri.run_config import RunConfig, load_run_config
from mrharmony.engine.loop import Epoch, Machine, Phase, RunFamily, Trainee
from mrharmony.errors import InputError


def patch_loss(outputs: dict, targets: dict, *, final_only: bool = False, in_brain: bool = False, channel_weights=None):
    """Sum over targets (and, unless ``final_only``, over every supervised output) of patch MSE;
    and the final output's loss per target. ``in_brain``: the MSE over the target voxels inside
    the target's brain only (features are zero outside it), as dense training on tiles needs.
    ``channel_weights``: a tensor (C,) of mean 1 weighting each channel's squared error."""
    import torch.nn.functional as F

    from mrharmony.dmri.networks.blocks import center_crop

    def mse(o, y):
        err = (o.float() - y.float()) ** 2
        if channel_weights is not None:
            err = err * channel_weights.view(1, -1, 1, 1, 1)
        if not in_brain:
            return err.mean() if channel_weights is not None else F.mse_loss(o.float(), y.float())
        inside = (y != 0).any(dim=1, keepdim=True).float()
        return (err * inside).sum() / (inside.sum() * o.shape[1]).clamp_min(1.0)

    total, per_target = 0.0, {}
    for t, outs in outputs.items():
        chosen = outs[-1:] if final_only else outs
        losses = [mse(o, center_crop(targets[t], o.shape[-3:])) for o in chosen]
        per_target[t] = losses[-1]
        total = total + sum(losses)
    return total, per_target


def crop_batch(batch, patch: int, target_sizes: dict[str, int]):
    """The centred patch of every tile of a batch ``(x, {target: y})``: inputs cropped to
    ``patch``, targets to ``target_sizes`` (a valid-convolution network's answer on the patch is
    the centre of its answer on the tile)."""
    x, ys = batch

    def centre(a, size):
        m = (a.shape[-1] - size) // 2
        return a[..., m : m + size, m : m + size, m : m + size]

    return centre(x, patch), {t: centre(y, target_sizes[t]) for t, y in ys.items()}


class Reflections:
    """Mirror samples along voxel axes with their SH coefficients reflected to match.

    A mirrored scan's SH coefficients are ``signs * c`` (:func:`~mrharmony.dmri.features.sh.
    reflection_signs`); in the normalized space of a scan (mean ``m``, std ``d`` per channel, zero
    outside the brain) that is ``x' = signs * x + (signs - 1) m / d`` inside the brain, with the
    statistics that scaled the scan (``scaling``: its platform's, or its own from its sidecar). Gradient directions are taken to be in the voxel
    frame (as FSL-style bvecs are), so that mirroring voxel axis a reflects direction component a.
    """

    def __init__(
        self, ds, subjects: list[str], platforms: dict[str, str], sh: dict, scaling, *, position: bool = False
    ):
        from mrharmony.dmri.features.sh import SHConfig, reflection_signs

        cfg = SHConfig(**sh)
        shells = len(cfg.shells) if cfg.shells else 1  # models of one shell may not list it
        self.signs = [np.tile(reflection_signs(cfg, a), shells) for a in range(3)]
        self.position = position  # the input's last 3 channels: a voxel's position (mirroring negates one)
        # per platform role ("input" or a target), per subject: (mean / std) of the scan's channels
        self.ratio = {
            role: np.stack([mean_over_std(scaling.of_scan(ds, s, p)) for s in subjects])
            for role, p in platforms.items()
        }

    def __call__(self, batch, subjects: np.ndarray, flips: np.ndarray):
        """Mirror each sample b of ``batch`` (x, {target: y}) along the axes where ``flips[b]``."""

        def channels_last_copy(a):  # keeps the layout the sampler delivers (see patches.py)
            return np.moveaxis(np.moveaxis(a, 1, -1).copy(), -1, 1)

        x, ys = batch
        x, ys = channels_last_copy(x), {t: channels_last_copy(y) for t, y in ys.items()}
        n_sh = len(self.signs[0])
        for b in range(len(x)):
            for a in np.flatnonzero(flips[b]):
                x[b, :n_sh] = self._mirror(x[b, :n_sh], a, self.ratio["input"][subjects[b]])
                if self.position:
                    x[b, n_sh:] = np.flip(x[b, n_sh:], axis=1 + a)
                    x[b, n_sh + a] *= -1
                for t in ys:
                    ys[t][b] = self._mirror(ys[t][b], a, self.ratio[t][subjects[b]])
        return x, ys

    def _mirror(self, v: np.ndarray, axis: int, mean_over_std: np.ndarray) -> np.ndarray:
        s = self.signs[axis][:, None, None, None]
        inside = np.any(v != 0, axis=0, keepdims=True)
        out = s * v + (s - 1) * mean_over_std[:, None, None, None] * inside
        return np.flip(out, axis=1 + axis)


def mean_over_std(stats) -> np.ndarray:
    """Mean over std of each channel of a :class:`~mrharmony.dmri.features.normalization.ChannelStats`."""
    return np.asarray(stats.mean, np.float32) / np.asarray(stats.std, np.float32)


def to_torch(batch, device):
    """A patch batch ``(x, {target: y})`` of arrays as tensors on ``device``."""
    import torch

    x, ys = batch
    return (
        torch.from_numpy(x).to(device, non_blocking=True),
        {t: torch.from_numpy(y).to(device, non_blocking=True) for t, y in ys.items()},
    )


def output_sizes(net, in_channels: int, patch: int) -> dict[str, list[int]]:
    """Edge of every output of every target for a ``patch``^3 input."""
    import torch

    with torch.no_grad():
        outs = net(torch.zeros(1, in_channels, patch, patch, patch))
    return {t: [int(o.shape[-1]) for o in v] for t, v in outs.items()}


def input_channels(ds) -> int:
    """The number of SH coefficients of the dataset's prepared features."""
    from mrharmony.dmri.features.prepare import feature_paths

    _, side = feature_paths(ds.root, ds.subjects[0], ds.input_platform.name)
    if not side.is_file():
        raise InputError("is missing; run 'mrharmony dmri prepare' on the dataset first.", side)
    return int(json.loads(side.read_text())["n_coefficients"])


def start_from(net, cfg: RunConfig, targets: list[str], source) -> None:
    """Put the weights of the finished run ``cfg.model.init_from`` into ``net``: the same network
    (method and settings), the same targets, trained on the same data and split (so that no test
    patch of this run was a training patch of that one)."""
    from mrharmony.dmri.config import check_same_data
    from mrharmony.dmri.models import load_model

    run = cfg.model.init_from
    if not (Path(run) / "model.pt").is_file():
        raise InputError(f"names init_from {run}, which is not a finished run (no model.pt).", source)
    other, meta = load_model(run)
    paths = path_fields(type(cfg.model))  # where a run finds other runs: its network is the same without them
    ours = {k: v for k, v in cfg.model.model_dump(mode="json", exclude_unset=True).items() if k not in paths}
    theirs = {k: v for k, v in meta["model"].items() if k not in paths}
    ours["inputs"] = cfg.training.inputs
    theirs["inputs"] = "sh+position" if meta.get("position_channels") else "sh"
    if theirs != ours or meta["targets"] != targets:
        raise InputError(
            f"is a {meta['model']['method']} run for {', '.join(meta['targets'])} with settings "
            f"{theirs}; init_from needs the network this run trains ({ours}, for {', '.join(targets)}).",
            run,
        )
    check_same_data(run, meta, cfg.data)
    net.load_state_dict(other.state_dict())


class NetworkTrainee(Trainee):
    """A dMRI network on SH patches (see the module docstring)."""

    def __init__(self, cfg: RunConfig, out: Path, machine: Machine, *, source=None):
        import torch

        from mrharmony import __version__
        from mrharmony.dmri.card import training_card
        from mrharmony.dmri.config import make_splits, target_platforms, test_subjects_of
        from mrharmony.dmri.deep import variant_name
        from mrharmony.dmri.features.normalization import FeatureScaling
        from mrharmony.dmri.harmonizer import platform_reference
        from mrharmony.dmri.patches import PatchSampler
        from mrharmony.engine.checkpoint import parameter_count
        from mrharmony.engine.run import relative_path

        tc = cfg.training
        if tc.batch_size % machine.world:
            raise InputError(f"batch_size {tc.batch_size} is not divisible by the {machine.world} processes.")
        self.cfg, self.machine = cfg, machine
        ds, targets, ratios = target_platforms(cfg.data)
        if cfg.model.single_target and len(targets) != 1:
            raise InputError(
                f"trains {cfg.model.method}, which predicts one target, for {len(targets)} targets "
                f"({', '.join(targets)}); name one in data.targets.",
                source,
            )
        torch.manual_seed(tc.seed)
        position = tc.inputs == "sh+position"
        if position and cfg.model.builds_on_single_networks:
            raise InputError(
                f"sets training.inputs to sh+position, which {cfg.model.method} does not take (its first "
                "stage is made of networks trained on the SH features alone).",
                source,
            )
        in_channels = input_channels(ds)
        net, rebuild = cfg.model.build_for_training(
            ratios, in_channels, patch_size=cfg.data.patch_size, data=cfg.data, run_dir=out
        )
        sizes = output_sizes(net, in_channels, cfg.data.patch_size)
        self.patch_targets = {t: max(s) for t, s in sizes.items()}
        # dense training cuts tiles around the same centres; validation scores their centred patches
        tile = tc.tile_size or cfg.data.patch_size
        if tc.tile_size and (tile % 2 == 0 or tile <= cfg.data.patch_size):
            raise InputError(
                f"sets tile_size {tile}; a tile must be odd and larger than the patch ({cfg.data.patch_size}).", source
            )
        tile_targets = (
            {t: max(s) for t, s in output_sizes(net, in_channels, tile).items()} if tc.tile_size else self.patch_targets
        )
        if position:  # the sizes above are the wrapped network's too (it modulates outputs only)
            net = cfg.model.with_position(net, ratios, in_channels)
        if cfg.model.init_from:
            start_from(net, cfg, targets, source)
        # the scale of each platform's features, fixed from the subjects that hold no test data
        subjects = list(cfg.data.subjects or ds.subjects)
        held_out = test_subjects_of(cfg.data, subjects, source=source)
        fit_subjects = [s for s in subjects if s not in held_out]
        denoised = (ds.input_platform.name, cfg.data.denoise) if cfg.data.denoise != "none" else None
        scaling = FeatureScaling.from_dataset(
            cfg.data.normalization, ds, [ds.input_platform.name, *targets], fit_subjects, denoised=denoised
        )
        self.sampler = PatchSampler.from_dataset(
            ds,
            subjects=subjects,
            targets=targets,
            size=tile,
            target_sizes=tile_targets,
            position=position,
            scaling=scaling,
        )
        self.splits = make_splits(self.sampler, cfg.data, source=source)
        if sorted(self.splits.test_subjects) != held_out:  # the scale must not have seen a test subject
            raise AssertionError(f"held-out subjects {self.splits.test_subjects} are not {held_out}")
        n_train = min(tc.patches_per_epoch or len(self.splits.train), len(self.splits.train))
        self.steps_per_epoch = n_train // tc.batch_size
        if n_train < tc.batch_size:
            raise InputError(
                f"gives {n_train} training patches per epoch, fewer than one minibatch of batch_size "
                f"{tc.batch_size}; raise patches_per_epoch or lower batch_size.",
                source,
            )
        self.targets = targets
        self.meta = {
            "mrharmony_version": __version__,
            "model": cfg.model.model_dump(mode="json", exclude_unset=True),
            "data": {**cfg.data.model_dump(mode="json"), "dataset": relative_path(cfg.data.dataset, out)},
            "targets": targets,
            "ratios": ratios,
            "in_channels": in_channels,
            "position_channels": position,
            "patch_size": cfg.data.patch_size,
            "output_sizes": sizes,
            "parameter_count": parameter_count(net),
            **rebuild,
            "card": training_card(
                cfg,
                ds,
                targets,
                fit_subjects,
                held_out,
                variant=cfg.label or variant_name(cfg.model.method, cfg.data.normalization),
                budget=cfg.training.model_dump(mode="json"),
            ),
            "input_platform": ds.input_platform.name,
            **({"label": cfg.label} if cfg.label else {}),
            **platform_reference(
                ds, targets, fit_subjects, normalization=cfg.data.normalization, denoise=cfg.data.denoise
            ),
        }
        # channels-last: the patch sampler already delivers that layout, and oneDNN / cuDNN are faster on it
        self.net = net.to(machine.device, memory_format=torch.channels_last_3d)
        self.phases = [Phase("train", tc.epochs)]
        self.channel_weights = None
        if tc.loss_weighting == "order":
            from mrharmony.dmri.features.sh import channel_orders

            orders = channel_orders(in_channels, self.meta["sh"]["sh_order_max"])
            counts = {int(o): int((orders == o).sum()) for o in np.unique(orders)}
            w = np.array([len(orders) / (len(counts) * counts[int(o)]) for o in orders], np.float32)
            self.channel_weights = torch.from_numpy(w).to(machine.device)
        self.reflections = (
            Reflections(
                ds,
                self.sampler.subjects,
                {"input": ds.input_platform.name, **{t: t for t in targets}},
                self.meta["sh"],
                scaling,
                position=position,
            )
            if tc.augment == "flips"
            else None
        )
        self.val_idx = self.splits.validation
        if tc.validation_patches and len(self.val_idx) > tc.validation_patches:
            self.val_idx = np.sort(
                np.random.default_rng([tc.seed, 2]).choice(self.val_idx, tc.validation_patches, replace=False)
            )

    def start_line(self) -> str:
        s = self.splits
        return (
            f"{self.cfg.model.method} for {', '.join(self.targets)}; {self.meta['parameter_count']} parameters; "
            f"{len(s.train)} train / {len(s.validation)} validation / {len(s.test)} test patches"
        )

    def split_record(self) -> dict:
        from mrharmony.dmri.config import split_record

        return split_record(self.splits, self.sampler.subjects)

    def optimizer(self, phase: int):
        import torch

        tc = self.cfg.training
        opt = torch.optim.Adam(self.net.parameters(), lr=tc.learning_rate)
        self.opt = opt
        if tc.lr_schedule == "cosine":  # set before every step by on_progress
            return opt, None
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=tc.lr_decay_every, gamma=1.0 / tc.lr_decay_factor)

    def learning_rate(self, epoch: float) -> float:
        """The cosine schedule's learning rate at a fractional epoch."""
        from mrharmony.engine.loop import cosine_decay

        tc = self.cfg.training
        if epoch < tc.warmup_epochs:
            return tc.learning_rate * (epoch + 1.0 / max(1, self.steps_per_epoch)) / tc.warmup_epochs
        span = max(tc.epochs - tc.warmup_epochs, 1e-9)
        return cosine_decay(tc.learning_rate, (epoch - tc.warmup_epochs) / span)

    def epoch(self, epoch: int, phase: int) -> Epoch:
        tc, m = self.cfg.training, self.machine
        order = np.random.default_rng([tc.seed, epoch]).permutation(self.splits.train)
        if tc.patches_per_epoch:
            order = order[: tc.patches_per_epoch]
        n = len(order) // tc.batch_size
        local = tc.batch_size // m.world

        aug = np.random.default_rng([tc.seed, epoch, 3])

        def batches():
            for b in range(n):
                idx = order[b * tc.batch_size : (b + 1) * tc.batch_size][m.rank * local : (m.rank + 1) * local]
                flips = aug.random((tc.batch_size, 3)) < 0.5  # drawn for the global batch: DDP matches one process
                cut = self.sampler.batch(idx)
                if self.reflections is not None:
                    cut = self.reflections(
                        cut, self.sampler.centres[idx, 0], flips[m.rank * local : (m.rank + 1) * local]
                    )
                yield to_torch(cut, m.device)

        return Epoch(batches(), n, tc.batch_size, "tiles" if tc.tile_size else "patches")

    def loss(self, model, batch, phase: int) -> dict:
        x, ys = batch
        total, _ = patch_loss(
            model(x), ys, in_brain=bool(self.cfg.training.tile_size), channel_weights=self.channel_weights
        )
        return {"loss": total}

    def validate(self, phase: int) -> dict[str, float]:
        """Mean loss of the final predictions on the validation patches (summed over targets)."""
        import torch

        self.net.eval()
        idx, batch = self.val_idx, self.cfg.training.batch_size
        sums: dict[str, float] = {}
        with torch.no_grad():
            for s in range(0, len(idx), batch):
                part = idx[s : s + batch]
                cut = self.sampler.batch(part)
                if self.cfg.training.tile_size:
                    cut = crop_batch(cut, self.cfg.data.patch_size, self.patch_targets)
                x, ys = to_torch(cut, self.machine.device)
                with self.machine.autocast():
                    outputs = self.net(x)
                _, per = patch_loss(outputs, ys, final_only=True)
                for t, v in per.items():
                    sums[t] = sums.get(t, 0.0) + float(v) * len(part)
        per_target = {t: v / max(1, len(idx)) for t, v in sums.items()}
        return {"loss": float(sum(per_target.values())), **{f"loss_{t}": v for t, v in per_target.items()}}

    def best_record(self, validation: dict[str, float]) -> dict[str, float]:
        return {t: validation[f"loss_{t}"] for t in self.targets}

    def on_progress(self, epoch: float) -> None:
        self.cfg.model.on_progress(self.net, epoch)
        if self.cfg.training.lr_schedule == "cosine" and getattr(self, "opt", None) is not None:
            from mrharmony.engine.loop import set_learning_rate

            set_learning_rate(self.opt, self.learning_rate(epoch))

    def columns(self) -> dict:
        return self.cfg.model.columns(self.net)


class NetworkFamily(RunFamily):
    """The dMRI networks' runs."""

    config_type = RunConfig
    distributed = True

    def load_config(self, path):
        return load_run_config(path)

    def resolved(self, cfg, run_dir: Path) -> dict:
        return resolved_config(cfg, run_dir)

    def check(self, cfg, source) -> None:
        from mrharmony.dmri.networks.base import NetworkConfig

        if not isinstance(cfg.model, NetworkConfig):
            raise InputError(
                f"configures method {cfg.model.method}, which is fitted in one pass: it has no epochs "
                "to train or resume.",
                source,
            )

    def trainee(self, cfg, out: Path, machine: Machine, *, source, quiet: bool) -> Trainee:
        return NetworkTrainee(cfg, out, machine, source=source)


def train(
    config: RunConfig | str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    stop_after_epochs: int | None = None,
) -> Path:
    """Train the network of ``config`` into the run directory ``out``, or fit its statistical
    method (see the module docstring and :func:`mrharmony.engine.loop.train` for the arguments)."""
    from mrharmony.config import read_yaml
    from mrharmony.dmri.statistical import StatisticalConfig
    from mrharmony.dmri.stylecode import StyleCodeFamily, StyleCodeRunConfig, is_stylecode_config
    from mrharmony.engine.loop import train as train_run

    recorded = Path(out) / "config.yaml"
    if isinstance(config, StyleCodeRunConfig) or (
        resume and config is None and recorded.is_file() and is_stylecode_config(read_yaml(recorded))
    ):
        return train_run(
            StyleCodeFamily(), config, out, resume=resume, force=force, quiet=quiet, stop_after_epochs=stop_after_epochs
        )
    if config is not None and not isinstance(config, RunConfig):
        from mrharmony.dmri.study_fit import fit_study, is_study_config, load_study_config

        raw = read_yaml(config)
        if is_stylecode_config(raw):  # learned from a study's sites, one epoch after another
            return train_run(
                StyleCodeFamily(),
                config,
                out,
                resume=resume,
                force=force,
                quiet=quiet,
                stop_after_epochs=stop_after_epochs,
            )
        if isinstance(raw, dict) and is_study_config(raw) and not resume:  # a study's sites, fitted in one pass
            return fit_study(load_study_config(config), out, force=force, quiet=quiet)
    if config is not None and not resume:
        cfg = config if isinstance(config, RunConfig) else load_run_config(config)
        if isinstance(cfg.model, StatisticalConfig):
            from mrharmony.dmri.statistical import fit_statistical

            return fit_statistical(cfg, out, force=force, quiet=quiet)
    return train_run(
        NetworkFamily(), config, out, resume=resume, force=force, quiet=quiet, stop_after_epochs=stop_after_epochs
    )
