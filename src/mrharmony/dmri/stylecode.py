"""``stylecode``: dMRI harmonization learned from a study's sites without traveling heads, to the
scanner of one (or a few) target scans of anyone, also of a scanner never seen in training.

What most studies have is a cohort per site, and new sites keep joining. ``stylecode`` learns from
the unpaired scans of a study's sites (:mod:`mrharmony.data.study`) a code of the scanner, read from
a scan, and a generator that moves a scan's SH features from its own scanner's code to another's.
Applying it needs the input scan and one or more scans of the target scanner, of any person
(``mrharmony dmri apply RUN --dwi ... --target-dwi ...``), or the name of a training site.

The method (networks: :mod:`mrharmony.dmri.networks.stylecode`):

1. **The scanner code.** An encoder's local features of the SH channels, averaged over the brain
   and mapped to a unit vector. It is trained first, alone, with a supervised contrastive loss
   (Khosla et al. 2020): the codes of two scans of one site are pulled together and those of
   different sites pushed apart, each scan changed first as a person would change it (every
   diffusivity scaled by a factor in ``person_md``, part of the signal made isotropic, free water
   added: :class:`~mrharmony.dmri.networks.stylecode.PersonChange`). Two scans of one site differ by
   their people, so the code learns what they share (the scanner) and not what differs between
   people; the changes teach it that what a person's brain does to the signal is not the scanner.
2. **The generator.** The input plus a residual (FiLM-conditioned on the input's and the target's
   codes; zero at the start), trained with the encoder frozen on patches of the study's scans: the
   identity for a target code of the input's own site (another person's scan of it); a cycle back
   to the input's code; the encoder's code of the output moved by the difference of the codes (the
   style); and, for a person change of the input, the change of the output (equivariance), so that
   what differs between people passes through.

The two traps of one-shot harmonization, and what the method does about each:

* *Statistics of one scan mix the scanner with the person.* Adaptive instance normalization with
  the target scan's feature statistics would pass a target person's brain-wide MD or FA into every
  harmonized scan, and standardizing the input by its own statistics erases the input person's.
  Here no statistic of a scan enters the features: the code is trained to be blind to the changes
  a person makes (tested: the code of a scan with every diffusivity 15% higher stays with its
  site), and the generator to pass them through (tested on files: a global change of the input
  survives ``apply``; the same change of the target scan does not reach the output).
* *A scale fixed per platform cannot exist for an unseen platform.* The features are scaled by one
  fixed per-channel scale of the method (the spread of each SH channel over the brains of every
  training scan, no centring), the same for every platform, seen or not; the code alone carries
  the scanner.

What one scan cannot tell: a scanner's b-value calibration scales every diffusivity as a person's
global MD change does, so the code is blind to it by design. The generator transfers what a scan
shows of its scanner apart from its person (noise, resolution, angular sampling, the relations
between shells and orders); a calibration offset between sites stays, as a person's MD would.

Examples
--------
.. code-block:: yaml

    data:
      study: study              # a prepared multi-site study
      sites: null               # the sites to learn from (default: every site)
      validation_people: 2      # per site, held out for the validation loss
    model:
      method: stylecode
    training:
      seed: 0
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from mrharmony.config import StrictModel
from mrharmony.dmri.harmonizer import Harmonizer
from mrharmony.engine.loop import Epoch, Machine, Phase, RunFamily, Trainee
from mrharmony.errors import InputError

METHOD = "stylecode"
#: the generator's losses and their default weights
LOSSES = {"identity": 1.0, "cycle": 1.0, "style": 1.0, "equivariance": 1.0}
#: the intended use of a stylecode model (its model card's)
USE = (
    "harmonizing diffusion MRI to the scanner of given target scans (SH coefficients, the signal on the target's "
    "gradient table, FA and MD), for multi-site studies without traveling heads and for sites that join later"
)


class StyleCodeData(StrictModel):
    """The ``data`` section of a stylecode run: the study and whom it learns from."""

    study: str = Field(json_schema_extra={"path": True}, description="a prepared multi-site study")
    sites: list[str] | None = Field(default=None, description="the sites to learn from (None: every site)")
    validation_people: int = Field(
        default=2, ge=1, description="per site, the last people of participants.tsv held out"
    )


class StyleCodeModel(StrictModel):
    """The ``model`` section of a stylecode run."""

    method: Literal["stylecode"]
    code_dim: int = Field(default=8, ge=2, le=64, description="values of the scanner code")
    width: int = Field(default=32, ge=4, le=256, description="feature channels of both networks")
    blocks: int = Field(default=3, ge=1, le=12, description="FiLM blocks of the generator")
    patch: int = Field(default=14, ge=6, le=64, description="edge of the generator's training patches (voxels)")
    style_patch: int = Field(
        default=12,
        ge=8,
        le=64,
        description="edge of the encoder's training patches (voxels; 3 of each face are context)",
    )
    style_patches: int = Field(default=4, ge=1, le=64, description="patches pooled into one code in training")
    person_md: tuple[float, float] = Field(
        default=(0.85, 1.2), description="range of the factor on every diffusivity of a person change"
    )
    person_isotropic: float = Field(default=0.35, ge=0, lt=1, description="most of the signal made isotropic")
    person_free_water: float = Field(default=0.15, ge=0, lt=1, description="most free water added")
    temperature: float = Field(default=0.2, gt=0, description="of the contrastive loss")
    weights: dict[str, float] = Field(
        default_factory=lambda: dict(LOSSES),
        description="of the generator's losses (identity, cycle, style, equivariance)",
    )

    @field_validator("weights")
    @classmethod
    def _losses(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(LOSSES))
        if unknown:
            raise ValueError(f"weights has an unknown loss {unknown[0]!r} (its losses: {', '.join(LOSSES)})")
        return {**LOSSES, **v}

    @model_validator(mode="after")
    def _ranges(self) -> StyleCodeModel:
        if self.patch <= 2 * (1 + self.blocks):
            raise ValueError(f"patch must exceed twice the generator's reach (1 + blocks = {1 + self.blocks})")
        lo, hi = self.person_md
        if not 0 < lo <= 1 <= hi:
            raise ValueError("person_md must be [low, high] with 0 < low <= 1 <= high")
        return self

    def build(self, channels: int):
        from mrharmony.dmri.networks.stylecode import StyleCodeNet

        return StyleCodeNet(channels, self.width, self.code_dim, self.blocks)


class StyleCodeTraining(StrictModel):
    """The ``training`` section of a stylecode run."""

    seed: int = 0
    encoder_epochs: int = Field(default=10, ge=1)
    generator_epochs: int = Field(default=20, ge=1)
    steps_per_epoch: int = Field(default=50, ge=1)
    sites_per_batch: int = Field(default=4, ge=2, description="sites in each contrastive batch (2 people each)")
    batch_size: int = Field(default=8, ge=1, description="generator patches per step")
    lr: float = Field(default=1e-3, gt=0)
    validation_batches: int = Field(default=4, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = False
    threads: int | None = Field(default=None, ge=1)


class StyleCodeRunConfig(StrictModel):
    """A stylecode run config (see the module docstring)."""

    label: str | None = Field(default=None, min_length=1)
    data: StyleCodeData
    model: StyleCodeModel
    training: StyleCodeTraining = Field(default_factory=StyleCodeTraining)


def is_stylecode_config(raw) -> bool:
    """Whether a run config (as read) is a stylecode run."""
    return isinstance(raw, dict) and isinstance(raw.get("model"), dict) and raw["model"].get("method") == METHOD


def load_stylecode_config(path: str | os.PathLike) -> StyleCodeRunConfig:
    from mrharmony.config import model_from_dict, read_yaml, resolve_paths

    raw = read_yaml(path)
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        raw["data"] = resolve_paths(raw["data"], StyleCodeData, Path(path).resolve().parent)
    return model_from_dict(StyleCodeRunConfig, raw, source=path)


# -- the study's scans in memory ----------------------------------------------------------------


class StudyScans:
    """The training sites' scans: SH features at their own scale, cropped to the brain (with a
    margin, padded to at least ``edge`` voxels), in the file's order of people."""

    def __init__(self, study, sites: list[str], validation_people: int, edge: int, *, source=None):
        from mrharmony.data.study import PARTICIPANTS_FILE
        from mrharmony.dmri.features.prepare import feature_paths, load_features

        self.sites = sites
        self.items: list[dict] = []
        for k, site in enumerate(sites):
            people = [p.subject for p in study.at(site)]
            if len(people) < validation_people + 2:
                raise InputError(
                    f"lists {len(people)} people at {site}; stylecode learns from at least 2 per site besides the "
                    f"{validation_people} held out for validation (data.validation_people).",
                    study.root / PARTICIPANTS_FILE,
                )
            for i, s in enumerate(people):
                f = load_features(study, s, site, normalized=False)
                data, mask = _crop(f.data, f.mask, edge)
                self.items.append(
                    {
                        "site": k,
                        "subject": s,
                        "validation": i >= len(people) - validation_people,
                        "x": np.ascontiguousarray(np.moveaxis(data, -1, 0)),
                        "mask": mask[None].astype(np.float32),
                        "sh": f.sh,
                    }
                )
        shells = {len(it["x"]) for it in self.items}
        if len(shells) > 1:
            raise InputError(
                "holds scans with different numbers of shells; stylecode learns from sites of one shell structure.",
                source,
            )
        self.channels = self.items[0]["x"].shape[0]
        first = self.items[0]
        side = json.loads(feature_paths(study.root, first["subject"], sites[first["site"]])[1].read_text())
        #: the shells of the features (b-values of the first site's)
        self.shells = [float(b) for b in side.get("shells") or [max(study.site(sites[0]).bvalues)]]
        from mrharmony.data.gradients import SHELL_TOLERANCE
        from mrharmony.data.study import STUDY_FILE

        for site in sites:
            theirs = sorted({float(b) for b in study.site(site).bvalues if b > 50})
            if len(theirs) != len(self.shells) or any(
                abs(a - b) > SHELL_TOLERANCE for a, b in zip(theirs, self.shells)
            ):
                raise InputError(
                    f"gives {site} shells at b={', '.join(f'{b:g}' for b in theirs)} s/mm^2 and {sites[0]} at "
                    f"b={', '.join(f'{b:g}' for b in self.shells)}; stylecode learns from sites of the same shells.",
                    study.root / STUDY_FILE,
                )
        train = [it for it in self.items if not it["validation"]]
        sq = sum((it["x"] ** 2).reshape(self.channels, -1).sum(1) for it in train)
        n = sum(float(it["mask"].sum()) for it in train)
        #: the method's one fixed scale per channel (root mean square over every training brain)
        self.scale = np.sqrt(sq / max(n, 1.0)).astype(np.float32) + 1e-8
        for it in self.items:
            it["x"] = it["x"] / self.scale[:, None, None, None]

    def indices(self, *, validation: bool, site: int | None = None) -> list[int]:
        return [
            i
            for i, it in enumerate(self.items)
            if it["validation"] == validation and (site is None or it["site"] == site)
        ]


def _crop(data: np.ndarray, mask: np.ndarray, edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and mask cut to the brain's bounding box (one voxel of margin), zero-padded to at
    least ``edge`` voxels along each axis."""
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - 1, 0)
    hi = np.minimum(idx.max(0) + 2, mask.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    d, m = data[sl], mask[sl]
    pad = [(0, max(0, edge - s)) for s in m.shape]
    return np.pad(d, pad + [(0, 0)]), np.pad(m, pad)


def random_patch(item: dict, edge: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A patch of ``edge`` voxels of a scan around a brain voxel: features (C, e, e, e) and mask (1, e, e, e)."""
    m = item["mask"][0]
    brain = np.argwhere(m > 0)
    c = brain[rng.integers(len(brain))]
    lo = np.clip(c - edge // 2, 0, np.asarray(m.shape) - edge)
    sl = (slice(None),) + tuple(slice(a, a + edge) for a in lo)
    return item["x"][sl], item["mask"][sl]


# -- training ------------------------------------------------------------------------------------


def supervised_contrastive(z, labels, temperature: float):
    """The supervised contrastive loss of unit codes ``z`` (N, D) with integer ``labels`` (N,):
    every other code of the same label a positive."""
    import torch

    sim = z @ z.T / temperature
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    return -(log_prob.masked_fill(~pos, 0.0).sum(1) / pos.sum(1).clamp(min=1)).mean()


class StyleCodeTrainee(Trainee):
    """The encoder's phase, then the generator's (see the module docstring)."""

    def __init__(self, cfg: StyleCodeRunConfig, out: Path, machine: Machine, *, source):
        import torch

        from mrharmony.data.study import STUDY_FILE, load_study
        from mrharmony.dmri.networks.stylecode import PersonChange, sphere_directions

        self.cfg, self.machine = cfg, machine
        study = load_study(cfg.data.study)
        sites = cfg.data.sites or study.sites
        unknown = [s for s in sites if s not in study.sites]
        if unknown:
            raise InputError(
                f"has no site {unknown[0]!r} (its sites: {', '.join(study.sites)}).", study.root / STUDY_FILE
            )
        if len(sites) < 2:
            raise InputError("names fewer than 2 sites; a scanner code learns from several (data.sites).", source)
        m = cfg.model
        self.data = StudyScans(study, sites, cfg.data.validation_people, max(m.patch, m.style_patch), source=source)
        sh = self.data.items[0]["sh"].model_dump(mode="json")
        self.shells = self.data.shells
        torch.manual_seed(cfg.training.seed)
        self.net = m.build(self.data.channels).to(machine.device)
        scale = torch.as_tensor(self.data.scale, device=machine.device)[None, :, None, None, None]
        change = PersonChange(sh, self.shells, sphere_directions())
        change.to_signal, change.to_coeffs = change.to_signal.to(machine.device), change.to_coeffs.to(machine.device)
        self.change = lambda x, *p: change(x * scale, *p) / scale
        self.phases = [
            Phase("encoder", cfg.training.encoder_epochs, select_best=False),
            Phase("generator", cfg.training.generator_epochs),
        ]
        self.codes: Any = None  # the code of every scan, (n_scans, code_dim), in the generator's phase
        first = {s: study.at(s)[0].subject for s in sites}
        self.meta = {
            "model": m.model_dump(mode="json"),
            "label": cfg.label,
            "in_channels": self.data.channels,
            "scale": self.data.scale.tolist(),
            "sh": {**sh, "shells": self.shells},
            "sites": sites,
            "site_codes": {},
            "target_gradients": {},
            "voxel_sizes": {s: list(study.site(s).voxel_size) for s in sites},
            "study": study.spec.name,
            "synthetic": bool(study.spec.generated_by),
            "fit_subjects": [it["subject"] for it in self.data.items if not it["validation"]],
            "validation_subjects": [it["subject"] for it in self.data.items if it["validation"]],
            "card": self._card(study, sites),
        }
        for s in sites:
            bvals, bvecs = study.scan(first[s]).gradients()
            self.meta["target_gradients"][s] = {"bvals": bvals.tolist(), "bvecs": bvecs.tolist()}

    def _card(self, study, sites: list[str]) -> dict:
        from mrharmony.engine.card import make_card, protocol

        limits = [
            "learned from the unpaired scans of one study's sites: target scans of other scanners are harmonized to "
            "by their code, untested beyond the protocols of its sites (shells, voxel sizes)",
            "a scanner's b-value calibration looks like a person's global MD in one scan: not transferred",
            "research use: not validated for clinical decisions",
        ]
        if study.spec.generated_by:
            limits.insert(0, "trained on synthetic data (mrharmony simulate --kind study): a demonstration")
        return make_card(
            wing="dmri",
            method=METHOD,
            variant=self.cfg.label or METHOD,
            training_data={
                "dataset": study.spec.name,
                "synthetic": bool(study.spec.generated_by),
                "platforms": [protocol(study.site(s)) for s in sites],
                "subjects_fitted_on": [it["subject"] for it in self.data.items if not it["validation"]],
                "subjects_held_out": [it["subject"] for it in self.data.items if it["validation"]],
            },
            budget=None,
            seed=self.cfg.training.seed,
            intended_use=USE,
            limits="; ".join(limits),
        )

    def start_line(self) -> str:
        return f"stylecode on {len(self.data.items)} scans of {len(self.data.sites)} sites"

    def split_record(self) -> dict:
        return {"fit": self.meta["fit_subjects"], "validation": self.meta["validation_subjects"]}

    def optimizer(self, phase: int):
        import torch

        part = self.net.encoder if phase == 0 else self.net.generator
        for p in self.net.encoder.parameters():
            p.requires_grad_(phase == 0)
        return torch.optim.Adam(part.parameters(), lr=self.cfg.training.lr), None

    # -- batches -----------------------------------------------------------------------------
    def _person(self, rng: np.random.Generator, n: int):
        import torch

        m = self.cfg.model
        lo, hi = np.log(m.person_md[0]), np.log(m.person_md[1])
        draws = [
            np.exp(rng.uniform(lo, hi, n)),
            rng.uniform(0, m.person_isotropic, n),
            rng.uniform(0, m.person_free_water, n),
        ]
        return [torch.as_tensor(d, dtype=torch.float32, device=self.machine.device) for d in draws]

    def _stack(self, arrays) -> object:
        import torch

        return torch.as_tensor(np.stack(arrays), device=self.machine.device)

    def _encoder_batch(self, rng: np.random.Generator, validation: bool) -> dict:
        m, t = self.cfg.model, self.cfg.training
        sites = [k for k in range(len(self.data.sites)) if self.data.indices(validation=validation, site=k)]
        chosen = rng.choice(sites, size=min(t.sites_per_batch, len(sites)), replace=False)
        xs, ms, labels = [], [], []
        for k in chosen:
            people = self.data.indices(validation=validation, site=int(k))
            for i in rng.choice(people, size=2, replace=len(people) < 2):
                for _view in range(2):
                    for _ in range(m.style_patches):
                        x, mk = random_patch(self.data.items[int(i)], m.style_patch, rng)
                        xs.append(x)
                        ms.append(mk)
                    labels.append(int(k))
        n_views = len(labels)
        return {
            "x": self._stack(xs),
            "mask": self._stack(ms),
            "labels": self._stack(np.asarray(labels)),
            "person": self._person(rng, n_views),
        }

    def _generator_batch(self, rng: np.random.Generator, validation: bool) -> dict:
        m, t = self.cfg.model, self.cfg.training
        xs, ms, src, tgt, own = [], [], [], [], []
        pool = self.data.indices(validation=validation)
        for _ in range(t.batch_size):
            i = int(rng.choice(pool))
            a = self.data.items[i]["site"]
            b = a if rng.random() < 0.25 else int(rng.integers(len(self.data.sites)))
            x, mk = random_patch(self.data.items[i], m.patch, rng)
            xs.append(x)
            ms.append(mk)
            same = [j for j in self.data.indices(validation=validation, site=a) if j != i] or [i]
            others = self.data.indices(validation=validation, site=b)
            src.append(i)
            own.append(int(rng.choice(same)))
            tgt.append(int(rng.choice([j for j in others if j != i] or others)))
        codes = self.codes
        return {
            "x": self._stack(xs),
            "mask": self._stack(ms),
            "code_in": codes[src],
            "code_own": codes[own],
            "code_target": codes[tgt],
            "person": self._person(rng, len(xs)),
        }

    def scan_codes(self):
        """The code of every scan (whole scan, no change), with the frozen encoder."""
        import torch

        enc = self.net.encoder.eval()
        with torch.no_grad():
            out = [enc(self._stack([it["x"]]), self._stack([it["mask"]]))[0] for it in self.data.items]
        return torch.stack(out)

    def epoch(self, epoch: int, phase: int) -> Epoch:
        t = self.cfg.training
        rng = np.random.default_rng([t.seed, epoch])
        if phase == 1:
            self.codes = self.scan_codes()
            self._record_site_codes()
        make = self._encoder_batch if phase == 0 else self._generator_batch
        batches = (make(rng, False) for _ in range(t.steps_per_epoch))
        return Epoch(batches, t.steps_per_epoch, 1, "steps")

    def _record_site_codes(self) -> None:
        import torch

        for k, s in enumerate(self.data.sites):
            idx = self.data.indices(validation=False, site=k)
            mean = torch.nn.functional.normalize(self.codes[idx].mean(0), dim=0)
            self.meta["site_codes"][s] = [float(v) for v in mean.cpu()]

    # -- losses ------------------------------------------------------------------------------
    def loss(self, model, batch, phase: int) -> dict:
        return self._encoder_loss(batch) if phase == 0 else self._generator_loss(batch)

    def _encoder_loss(self, batch) -> dict:
        m = self.cfg.model
        n_views = len(batch["labels"])
        person = [p.repeat_interleave(m.style_patches) for p in batch["person"]]
        x = self.change(batch["x"], *person) * batch["mask"]
        sums, counts = self.net.encoder.features(x, batch["mask"])
        sums = sums.view(n_views, m.style_patches, -1).sum(1)
        counts = counts.view(n_views, m.style_patches).sum(1)
        z = self.net.encoder.pooled(sums, counts)
        loss = supervised_contrastive(z, batch["labels"], m.temperature)
        return {"loss": loss, "contrastive": loss}

    def _generator_loss(self, batch) -> dict:
        import torch

        w = self.cfg.model.weights
        g, enc = self.net.generator, self.net.encoder
        x, mk = batch["x"], batch["mask"]
        c_in, c_t, c_own = batch["code_in"], batch["code_target"], batch["code_own"]
        reach = 1 + self.cfg.model.blocks  # voxels a generator output reads on each side
        inner = torch.zeros_like(mk)
        inner[..., reach:-reach, reach:-reach, reach:-reach] = 1.0
        weight = mk * inner  # the patch's inside: same padding reads zeros at its faces

        def l1(a, b):
            return ((a - b).abs() * weight).sum() / (weight.sum() * a.shape[1]).clamp(min=1.0)

        y = g(x, mk, c_in, c_t)
        losses = {
            "identity": l1(g(x, mk, c_in, c_own), x),
            "cycle": l1(g(y, mk, c_t, c_in), x),
            "style": ((enc(y, weight) - enc(x, weight)) - (c_t - c_in)).pow(2).sum(-1).mean(),
        }
        changed = self.change(x, *batch["person"]) * mk
        losses["equivariance"] = l1(g(changed, mk, c_in, c_t), self.change(y, *batch["person"]) * mk)
        losses["loss"] = sum(w[k] * v for k, v in losses.items())
        return losses

    def validate(self, phase: int) -> dict[str, float]:
        import torch

        t = self.cfg.training
        rng = np.random.default_rng([t.seed, 10**6])  # the same batches after every epoch
        make = self._encoder_batch if phase == 0 else self._generator_batch
        if phase == 1 and self.codes is None:
            self.codes = self.scan_codes()
        self.net.eval()
        sums: dict[str, float] = {}
        with torch.no_grad():
            for _ in range(t.validation_batches):
                for k, v in self.loss(self.net, make(rng, True), phase).items():
                    sums[k] = sums.get(k, 0.0) + float(v) / t.validation_batches
        return sums


class StyleCodeFamily(RunFamily):
    """stylecode's runs for :func:`mrharmony.engine.loop.train`."""

    config_type = StyleCodeRunConfig

    def load_config(self, path):
        return load_stylecode_config(path)

    def resolved(self, cfg, run_dir: Path) -> dict:
        from mrharmony.config import relative_paths

        out = cfg.model_dump(mode="json")
        out["data"] = relative_paths(out["data"], StyleCodeData, run_dir)
        return out

    def trainee(self, cfg, out: Path, machine: Machine, *, source, quiet: bool) -> Trainee:
        return StyleCodeTrainee(cfg, out, machine, source=source)


# -- applying ------------------------------------------------------------------------------------


class StyleCodeHarmonizer(Harmonizer):
    """A trained stylecode model behind the Harmonizer contract: its targets are the training sites
    (by their mean code) and any target given by scans (:meth:`with_target_scans`)."""

    method = METHOD

    def __init__(self, net, meta: dict, *, source: Path | None = None, device: str | None = None):
        scale = {"mean": [0.0] * len(meta["scale"]), "std": meta["scale"]}
        sites = list(meta["sites"])
        super().__init__(
            targets=sites,
            ratios=dict.fromkeys(sites, 1),
            reference={
                "normalization": "platform",
                "denoise": "none",
                "input_stats": scale,
                "target_stats": dict.fromkeys(sites, scale),
                "target_gradients": dict(meta["target_gradients"]),
                "sh": meta["sh"],
                "voxel_sizes": dict(meta["voxel_sizes"]),
                "input_protocol": {
                    "platform": f"the sites of {meta['study']}",
                    "shells": meta["sh"]["shells"],
                    "voxel_sizes": sorted({tuple(v) for v in meta["voxel_sizes"].values()}),
                },
            },
            name=meta.get("label") or METHOD,
        )
        self.net, self.meta, self.source, self.device = net, meta, source, device
        self.codes = {s: np.asarray(c, np.float32) for s, c in meta["site_codes"].items()}

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> StyleCodeHarmonizer:
        from mrharmony.engine.checkpoint import load_weights, read_method_model

        obj, meta, file = read_method_model(path, METHOD, "stylecode", "dmri train")
        net = StyleCodeModel(**meta["model"]).build(int(meta["in_channels"]))
        load_weights(net, obj, file)
        return cls(net.eval(), meta, source=file.parent, **kwargs)

    def save(self, directory: str | os.PathLike) -> Path:
        from mrharmony.engine.checkpoint import save_network

        return save_network(directory, self.net, self.meta, self.source)

    @property
    def parameter_count(self) -> int:
        return int(sum(p.numel() for p in self.net.parameters()))

    def _torch(self, scan):
        import torch

        dev = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        x = torch.as_tensor(np.moveaxis(self.scaled_input(scan).data, -1, 0)[None].copy(), device=dev)
        m = torch.as_tensor(np.asarray(scan.mask, np.float32)[None, None], device=dev)
        return x, m, dev

    def code_of(self, scans: list) -> np.ndarray:
        """The scanner code of one or more scans of a scanner (their mean, made a unit vector)."""
        import torch

        net = self.net.eval()
        codes = []
        with torch.no_grad():
            for scan in scans:
                x, m, dev = self._torch(scan)
                net.to(dev)
                codes.append(net.encoder.of_volume(x, m)[0].cpu().numpy())
        mean = np.mean(codes, 0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32)

    def with_target_scans(self, name: str, scans: list, gradients: tuple) -> StyleCodeHarmonizer:
        """The model with the target ``name`` given by ``scans`` (their features,
        :class:`~mrharmony.dmri.features.prepare.ScanFeatures`) and the gradient table its harmonized
        signal is written on; the training sites stay targets."""
        import copy

        h = copy.copy(self)
        h.codes = {**self.codes, name: self.code_of(scans)}
        bvals, bvecs = gradients
        ref = dict(self.reference)
        ref["target_gradients"] = {
            **ref["target_gradients"],
            name: {"bvals": np.asarray(bvals).tolist(), "bvecs": np.asarray(bvecs).tolist()},
        }
        ref["target_stats"] = {**ref["target_stats"], name: ref["input_stats"]}
        ref["voxel_sizes"] = {**ref["voxel_sizes"], name: None}
        h.reference = ref
        h.targets = [name] + [t for t in self.targets if t != name]
        h.ratios = {**self.ratios, name: 1}
        return h

    def predict(self, scan, *, region: np.ndarray | None = None) -> dict[str, np.ndarray]:
        import torch

        x, m, dev = self._torch(scan)
        net = self.net.eval().to(dev)
        out = {}
        with torch.no_grad():
            code_in = net.encoder.of_volume(x, m)
            for t in self.targets:
                c = torch.as_tensor(self.codes[t], device=dev)[None]
                y = net.generator(x, m, code_in, c)[0]
                out[t] = np.ascontiguousarray(np.moveaxis(y.cpu().numpy(), 0, -1))
        return out
