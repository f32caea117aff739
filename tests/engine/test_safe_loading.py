"""Opening a saved model or training state never runs code from it, and every format version
opens through one function (mrharmony.engine.checkpoint.read_checkpoint)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mrharmony import FORMAT_VERSION
from mrharmony.cli import main
from mrharmony.engine.checkpoint import check_plain, cpu_state, read_checkpoint, save_model, save_state
from mrharmony.engine.loop import train
from mrharmony.errors import InputError
from mrharmony.structural.hail import HAIL
from mrharmony.structural.loading import load_image_harmonizer
from tests.engine.test_loop import ToyConfig, ToyFamily


def _argv(wing: str, verb: str, *args) -> list[str]:
    """``mrharmony <wing> <verb> ARGS``: the one place to adapt if the command-line grammar changes."""
    return [wing, verb, *(str(a) for a in args)]


HAIL_META = {
    "mrharmony_version": "0.0.test",
    "training_sites": ["a", "b"],
    "model": {"method": "hail", "widths": [4, 8, 16], "skips": True},
}


class RunsCode:
    """What a hostile model file would hold: unpickling it calls ``os.system``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _hail() -> HAIL:
    torch.manual_seed(0)
    return HAIL((4, 8, 16), skips=True)


def _format_1(path: Path, contents: dict) -> Path:
    """A file as mrharmony 0.1.0 (format version 1) wrote it: ``torch.save`` of the dict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": 1, **contents}, path)
    return path


def _hostile(path: Path, marker: Path, *, bare: bool = False) -> Path:
    """A model file (a ``torch.save`` zip, or a bare pickle) whose unpickling would create ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {
        "format_version": FORMAT_VERSION,
        "meta": {**HAIL_META, "note": RunsCode(marker)},
        "state_dict": cpu_state(_hail()),
    }
    if bare:
        path.write_bytes(pickle.dumps(obj, protocol=4))
    else:
        torch.save(obj, path)
    return path


def test_every_file_a_run_writes_opens_tensors_only_and_has_the_current_version(tmp_path):
    run = train(ToyFamily(), ToyConfig(), tmp_path / "run", quiet=True)
    assert FORMAT_VERSION == 2
    for name in ("model.pt", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(run / name) == [], name
        assert torch.load(run / name, weights_only=True)["format_version"] == FORMAT_VERSION, name


@pytest.mark.parametrize(
    "value, kind",
    [
        (np.float64(0.5), "numpy.float64"),
        (np.arange(3), "numpy.ndarray"),
        (Path("/data"), "PosixPath|WindowsPath"),
        (np.random.get_state(), "numpy.ndarray"),
        ({1.5j}, "builtins.set"),
    ],
)
def test_saving_anything_but_tensors_and_plain_values_is_refused_before_the_file_is_written(tmp_path, value, kind):
    with pytest.raises(TypeError, match=rf"the saved state\['meta'\]\['x'\](\[1\])? is a \S*({kind});"):
        save_state(tmp_path / "bad.pt", {"meta": {"x": value}, "state_dict": {}})
    assert not (tmp_path / "bad.pt").exists()


def test_plain_states_are_saved_as_they_are(tmp_path):
    """An optimizer's state and numpy's generator state as a plain dict of ints are plain."""
    rng = np.random.default_rng(0).bit_generator.state
    opt = {
        "state": {0: {"step": torch.tensor(3.0)}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99), "params": [0], "fused": None}],
    }
    check_plain(opt)
    save_state(tmp_path / "ok.pt", {"rng": rng, "optimizer": opt})
    back = read_checkpoint(tmp_path / "ok.pt")
    assert back["rng"] == rng and back["optimizer"]["param_groups"] == opt["param_groups"]


def test_a_trainee_whose_meta_is_not_plain_is_refused_before_the_first_epoch(tmp_path):
    class NumpyMeta(ToyFamily):
        def trainee(self, cfg, out, machine, *, source, quiet):
            t = super().trainee(cfg, out, machine, source=source, quiet=quiet)
            t.meta["voxel_size"] = np.ones(3)
            return t

    with pytest.raises(TypeError, match=r"the trainee's meta\['voxel_size'\] is a numpy.ndarray"):
        train(NumpyMeta(), ToyConfig(), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("bare", [False, True], ids=["torch-zip", "bare-pickle"])
def test_a_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path, bare):
    marker = tmp_path / "ran"
    path = _hostile(tmp_path / "run" / "model.pt", marker, bare=bare)
    with pytest.raises(InputError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and message.endswith(".")
    if bare:
        assert "is a bare pickle, not a model or checkpoint that mrharmony saved" in message
    else:
        assert "holds objects other than tensors and plain values" in message and "system" in message
        assert "could run code; mrharmony does not open it" in message
    with pytest.raises(InputError):
        load_image_harmonizer(tmp_path / "run")
    assert not marker.exists()
    # the payload is real: the unrestricted unpickling of mrharmony 0.1.0 runs it
    if bare:
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_format_1_model_opens_and_migrates_to_the_current_version(tmp_path):
    net = _hail()
    path = _format_1(tmp_path / "old" / "model.pt", {"meta": HAIL_META, "state_dict": cpu_state(net)})
    obj = read_checkpoint(path)
    assert obj["format_version"] == FORMAT_VERSION and obj["meta"] == HAIL_META
    h = load_image_harmonizer(tmp_path / "old")
    assert h.training_sites == ["a", "b"]
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in h.net.state_dict().items())


def test_a_format_1_training_state_resumes_to_the_uninterrupted_weights(tmp_path):
    whole = train(ToyFamily(), ToyConfig(), tmp_path / "whole", quiet=True)
    part = train(ToyFamily(), ToyConfig(), tmp_path / "part", quiet=True, stop_after_epochs=3)
    for name in ("last.pt", "best.pt"):  # rewritten as mrharmony 0.1.0 wrote them
        state = torch.load(part / "checkpoints" / name, weights_only=True)
        _format_1(part / "checkpoints" / name, {k: v for k, v in state.items() if k != "format_version"})
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=True)["format_version"] == 1
    train(ToyFamily(), None, part, resume=True, quiet=True)
    a, b = read_checkpoint(whole / "model.pt")["state_dict"], read_checkpoint(part / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_format_1_file_holding_numpy_objects_is_refused_in_one_sentence(tmp_path):
    """mrharmony 0.1.0 never saved numpy objects; a version-1 file that holds some was not written
    by it, and is refused as any other file that is not tensors and plain values."""
    path = _format_1(
        tmp_path / "model.pt", {"meta": {**HAIL_META, "voxel_size": np.ones(3)}, "state_dict": cpu_state(_hail())}
    )
    with pytest.raises(InputError, match=r"model.pt: holds objects other than tensors and plain values \(.*numpy"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "version, expected",
    [
        (3, r"was written by a newer mrharmony \(format version 3, this one reads up to 2\); upgrade mrharmony"),
        (0, r"has format version 0, which no mrharmony wrote"),
        ("2", r"has no valid format version \('2'\)"),
    ],
)
def test_unknown_and_newer_format_versions_are_refused_in_one_sentence(tmp_path, version, expected):
    path = tmp_path / "model.pt"
    torch.save({"format_version": version, "meta": HAIL_META, "state_dict": cpu_state(_hail())}, path)
    with pytest.raises(InputError, match=f"^{path}: {expected}") as err:
        read_checkpoint(path)
    assert str(err.value).count("\n") == 0


def _broken(tmp_path: Path, kind: str) -> Path:
    good = tmp_path / "good.pt"
    save_model(good, _hail(), HAIL_META)
    path = tmp_path / kind / "model.pt"
    path.parent.mkdir()
    data = {
        "truncated": good.read_bytes()[:2000],
        "empty": b"",
        "text": b"a model, honest\n",
        "zip-of-other": None,
        "list": None,
    }[kind]
    if kind == "zip-of-other":
        import zipfile

        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "not a model")
    elif kind == "list":
        torch.save([1, 2], path)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("truncated", "could not be read as a mrharmony model or checkpoint (truncated or corrupt"),
        ("empty", "could not be read as a mrharmony model or checkpoint (truncated or corrupt"),
        ("text", "could not be read as a mrharmony model or checkpoint (truncated or corrupt"),
        ("zip-of-other", "could not be read as a mrharmony model or checkpoint (truncated or corrupt"),
        ("list", "is not a mrharmony model or checkpoint."),
    ],
)
def test_unreadable_files_are_refused_in_one_sentence(tmp_path, kind, expected):
    path = _broken(tmp_path, kind)
    with pytest.raises(InputError) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"{path}: {expected}") and "\n" not in str(err.value)


def test_a_folder_and_a_missing_file_are_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match="run: is a folder, not a mrharmony model or checkpoint file"):
        read_checkpoint(tmp_path / "run")
    with pytest.raises(InputError, match=r"run.model\.pt: is missing"):
        load_image_harmonizer(tmp_path / "run")


@pytest.fixture()
def images(tmp_path):
    """A tiny DWI series (with its gradient table and mask) and two T1w images."""
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    d = tmp_path / "images"
    d.mkdir()
    bvals = np.array([0] + [1000] * 6)
    bvecs = np.vstack([np.zeros(3), np.eye(3), -np.eye(3)]).T
    nib.save(nib.Nifti1Image((100 + 10 * rng.random((8, 8, 8, 7))).astype(np.float32), affine), d / "dwi.nii.gz")
    np.savetxt(d / "dwi.bval", bvals[None], fmt="%d")
    np.savetxt(d / "dwi.bvec", bvecs, fmt="%.1f")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), affine), d / "mask.nii.gz")
    for name in ("input", "target"):
        nib.save(nib.Nifti1Image((100 * rng.random((16, 16, 12))).astype(np.float32), affine), d / f"{name}.nii.gz")
    return d


@pytest.mark.parametrize("wing", ["dmri", "structural"])
def test_the_command_line_refuses_a_code_running_model_with_exit_2_and_one_line(tmp_path, images, wing, capsys):
    marker = tmp_path / "ran"
    _hostile(tmp_path / "run" / "model.pt", marker)
    if wing == "dmri":
        argv = _argv(
            "dmri",
            "apply",
            tmp_path / "run",
            "--dwi",
            images / "dwi.nii.gz",
            "--bval",
            images / "dwi.bval",
            "--bvec",
            images / "dwi.bvec",
            "--mask",
            images / "mask.nii.gz",
            "--out",
            tmp_path / "out",
        )
    else:
        argv = _argv(
            "structural",
            "apply",
            tmp_path / "run",
            "--input",
            images / "input.nii.gz",
            "--target-image",
            images / "target.nii.gz",
            "--out",
            tmp_path / "out",
        )
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert "model.pt: holds objects other than tensors and plain values" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()
