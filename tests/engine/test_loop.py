"""The one training loop, with a small two-phase trainee: run directory, phases, best model,
exact resume, and the refusals every family shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mrharmony.config import StrictModel
from mrharmony.engine.checkpoint import read_checkpoint
from mrharmony.engine.loop import Epoch, Machine, Phase, RunFamily, Trainee, train
from mrharmony.errors import InputError


class ToyTraining(StrictModel):
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    threads: int | None = None
    epochs: tuple[int, int] = (2, 3)


class ToyConfig(StrictModel):
    training: ToyTraining = ToyTraining()


class ToyTrainee(Trainee):
    """Phase 1 fits the first layer alone, phase 2 the second with the first frozen; data from a
    seeded generator per epoch, as the real trainees draw theirs."""

    def __init__(self, cfg: ToyConfig, machine: Machine):
        self.cfg = cfg
        torch.manual_seed(cfg.training.seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        self.phases = [
            Phase("first", cfg.training.epochs[0], select_best=False),
            Phase("second", cfg.training.epochs[1]),
        ]
        self.meta = {"model": {"method": "toy"}}
        self.progress: list[float] = []

    def optimizer(self, phase):
        trained = self.net[0] if phase == 0 else self.net[2]
        for p in self.net.parameters():
            p.requires_grad_(False)
        for p in trained.parameters():
            p.requires_grad_(True)
        opt = torch.optim.SGD(trained.parameters(), lr=0.1)
        return opt, torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)

    def epoch(self, epoch, phase):
        rng = np.random.default_rng([self.cfg.training.seed, epoch])
        xs = torch.from_numpy(rng.normal(size=(5, 8, 3)).astype(np.float32))
        return Epoch(((x, x.sum(1, keepdim=True)) for x in xs), 5, 8, "samples")

    def loss(self, model, batch, phase):
        x, y = batch
        mse = ((model(x) - y) ** 2).mean()
        return {"loss": mse, "mse": mse}

    def validate(self, phase):
        with torch.no_grad():
            x = torch.linspace(-1, 1, 12).reshape(4, 3)
            return {"loss": float(((self.net(x) - x.sum(1, keepdim=True)) ** 2).mean())}

    def on_progress(self, epoch):
        self.progress.append(epoch)


class ToyFamily(RunFamily):
    config_type = ToyConfig

    def load_config(self, path):
        from mrharmony.config import load_yaml_model

        return load_yaml_model(ToyConfig, path)

    def resolved(self, cfg, run_dir):
        return cfg.model_dump(mode="json")

    def trainee(self, cfg, out, machine, *, source, quiet):
        self.last = ToyTrainee(cfg, machine)
        return self.last


def _weights(run: Path, name: str = "model.pt") -> dict:
    return read_checkpoint(run / name)["state_dict"]


def test_two_phases_write_the_run_directory_and_select_best_in_the_second(tmp_path):
    run = train(ToyFamily(), ToyConfig(), tmp_path / "run", quiet=True)
    for f in (
        "config.yaml",
        "log.txt",
        "metrics.csv",
        "split.json",
        "model.pt",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run / f).is_file(), f
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,phase,lr,train_loss,train_mse,val_loss,seconds,samples_per_s" and len(rows) == 6
    assert [r.split(",")[1] for r in rows[1:]] == ["1", "1", "2", "2", "2"]
    # the learning rate restarts with the second phase's optimizer
    assert [float(r.split(",")[2]) for r in rows[1:]] == [0.1, 0.05, 0.1, 0.05, 0.025]
    meta = read_checkpoint(run / "model.pt")["meta"]
    assert meta["best_epoch"] >= 3, "phase 1 does not select the model"
    val = [float(r.split(",")[5]) for r in rows[1:]]
    assert meta["best_validation_loss"] == pytest.approx(min(val[2:]))


def test_resume_after_any_epoch_gives_the_uninterrupted_weights(tmp_path):
    whole = train(ToyFamily(), ToyConfig(), tmp_path / "whole", quiet=True)
    for stop in (1, 2, 4):
        run = train(ToyFamily(), ToyConfig(), tmp_path / f"cut{stop}", quiet=True, stop_after_epochs=stop)
        assert not (run / "model.pt").exists()
        train(ToyFamily(), None, run, resume=True, quiet=True)
        a, b = _weights(whole), _weights(run)
        assert all(torch.equal(a[k], b[k]) for k in a), f"stopped after {stop}"
        assert (whole / "metrics.csv").read_text().count("\n") == (run / "metrics.csv").read_text().count("\n")


def test_other_seed_other_weights_and_hooks_see_every_step(tmp_path):
    a = train(ToyFamily(), ToyConfig(), tmp_path / "a", quiet=True)
    b = train(ToyFamily(), ToyConfig(training=ToyTraining(seed=1)), tmp_path / "b", quiet=True)
    wa, wb = _weights(a), _weights(b)
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)
    family = ToyFamily()
    train(family, ToyConfig(), tmp_path / "c", quiet=True)
    expected = [x for e in range(5) for x in [e + b / 5 for b in range(5)] + [e + 1]]
    assert family.last.progress == pytest.approx(expected)


def test_existing_run_needs_force_resume_needs_a_checkpoint_and_a_changed_config_is_refused(tmp_path):
    run = train(ToyFamily(), ToyConfig(), tmp_path / "run", quiet=True, stop_after_epochs=1)
    with pytest.raises(InputError, match="already exists and is not empty"):
        train(ToyFamily(), ToyConfig(), run, quiet=True)
    with pytest.raises(InputError, match="differs from the config of the run being resumed"):
        train(ToyFamily(), ToyConfig(training=ToyTraining(seed=3)), run, resume=True, quiet=True)
    with pytest.raises(InputError, match="has no checkpoint to resume from"):
        train(ToyFamily(), None, tmp_path / "empty", resume=True, quiet=True)
    with pytest.raises(InputError, match="a config is needed"):
        train(ToyFamily(), None, tmp_path / "new", quiet=True)
    from mrharmony.engine.checkpoint import save_state

    state = read_checkpoint(run / "checkpoints" / "last.pt")
    del state["best_record"], state["format_version"]
    save_state(run / "checkpoints" / "last.pt", state)  # a state that lacks what resuming needs
    with pytest.raises(
        InputError,
        match=r"last.pt: is not a training state this mrharmony can resume \(it has no "
        r"best_record\)",
    ):
        train(ToyFamily(), None, run, resume=True, quiet=True)
    train(ToyFamily(), ToyConfig(), run, quiet=True, force=True)
    assert (run / "model.pt").is_file()
