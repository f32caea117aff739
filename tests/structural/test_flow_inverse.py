"""IHF-Harmony's exact inverse at any image size, from the written files
(`mrharmony structural restore`)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from mrharmony.cli import main
from mrharmony.engine.checkpoint import save_model
from mrharmony.structural.hail import HAIL
from mrharmony.structural.ihf.inference import harmonize_flow, restore_flow
from mrharmony.structural.ihf.squeeze_flow import AAN, SqueezeIHF

META = {"training_sites": ["a", "b"], "mrharmony_version": "0.0.test"}


def _random_flow(dims: int, *, levels: int = 2, blocks: int = 3, hidden: int = 32, seed: int = 0) -> SqueezeIHF:
    """A flow far from the identity it starts as (its last layers and style maps start at zero)."""
    torch.manual_seed(seed)
    net = SqueezeIHF(dims=dims, levels=levels, blocks=blocks, hidden=hidden, style_dim=8)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _volume(shape, seed=0):
    """A smooth positive image with a brain mask inside it."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), 1.5).astype(np.float32) * 1000 + 200
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, :] = True
    return img, mask


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize(
    "dims, shape", [(2, (70, 90, 3)), (2, (73, 91, 2)), (2, (72, 92, 2)), (3, (13, 17, 11)), (3, (16, 20, 12))]
)
def test_the_round_trip_is_exact_at_any_size(dims, shape):
    net = _random_flow(dims)
    x, m = _volume(shape)
    t, tm = _volume(shape, seed=1)
    out, record = harmonize_flow(net, x, m, t * 3, tm)
    assert out.shape == x.shape and _relative(out / record["TargetScale"], x / record["InputScale"]) > 1e-2
    padded = any(n % 4 for n in (shape[:2] if dims == 2 else shape))
    assert (record["FlowMargin"].size > 0) == padded  # the flow's values on the padding, kept
    assert _relative(restore_flow(net, out, record), x) < 1e-5


def test_the_round_trip_is_exact_on_the_full_presets_grid():
    """The `full` structural preset's 96 x 123 x 98 grid: 123 is no multiple of 4."""
    x, m = _volume((96, 123, 98))
    t, tm = _volume((96, 123, 98), seed=1)
    for net in (_random_flow(2, hidden=8), _random_flow(3, levels=1, blocks=1, hidden=4)):
        out, record = harmonize_flow(net, x, m, t, tm)
        assert record["FlowMargin"].size > 0 and _relative(restore_flow(net, out, record), x) < 1e-5


def test_normalization_statistics_are_the_images_not_the_paddings():
    torch.manual_seed(0)
    aan = AAN(4, 8)
    h = torch.randn(2, 4, 6, 7)
    s = torch.randn(2, 8)
    padded = torch.cat([h, 100 * torch.randn(2, 4, 6, 3)], dim=3)  # garbage on 3 columns of padding
    valid = torch.zeros(2, 1, 6, 10)
    valid[..., :7] = 1
    torch.testing.assert_close(aan(padded, s, valid)[..., :7], aan(h, s), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(aan(padded, s)[..., :7], aan(h, s), atol=1e-2)  # unmasked: the padding counts


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("restore")
    net = _random_flow(2, hidden=8)
    model = {"method": "ihf", "flow": "squeeze", "dims": 2, "levels": 2, "blocks": 3, "hidden": 8, "style_dim": 8}
    save_model(d / "ihf" / "model.pt", net, {**META, "model": model})
    save_model(d / "other" / "model.pt", _random_flow(2, hidden=8, seed=1), {**META, "model": model})
    torch.manual_seed(0)
    save_model(
        d / "hail" / "model.pt",
        HAIL((4, 8, 16), skips=True),
        {**META, "model": {"method": "hail", "widths": [4, 8, 16], "skips": True}},
    )
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for name, seed, scale in (("input", 0, 1.0), ("target", 1, 4.0)):
        img, mask = _volume((37, 45, 9), seed)
        nib.save(nib.Nifti1Image(img * scale, affine), d / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), d / "mask.nii.gz")
    assert (
        main(
            [
                "structural",
                "apply",
                str(d / "ihf"),
                "--input",
                str(d / "input.nii.gz"),
                "--target-image",
                str(d / "target.nii.gz"),
                "--mask",
                str(d / "mask.nii.gz"),
                "--target-mask",
                str(d / "mask.nii.gz"),
                "--out",
                str(d / "harmonized"),
                "--quiet",
            ]
        )
        == 0
    )
    return d


# what `structural apply --out harmonized` wrote for input.nii.gz: the image, its sidecar, the flow's margin
HARMONIZED = ("input_desc-harmonized.nii.gz", "input_desc-harmonized.json", "input_desc-harmonized_flowmargin.npy")


def _harmonized(files, i: int = 0):
    return files / "harmonized" / HARMONIZED[i]


def test_restore_gives_the_input_back_from_the_files(files, tmp_path):
    side = json.loads(_harmonized(files, 1).read_text())
    assert side["FlowMargin"] == HARMONIZED[2] and _harmonized(files, 2).is_file()
    assert len(side["StyleCode"]) == 8 and side["TargetScale"] > 0
    out = tmp_path / "restored"
    assert (
        main(
            [
                "structural",
                "restore",
                str(files / "ihf"),
                "--input",
                str(_harmonized(files)),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    x = np.asarray(nib.load(files / "input.nii.gz").dataobj)
    back = nib.load(out / "input_desc-restored.nii.gz")
    assert _relative(np.asarray(back.dataobj), x) < 1e-5
    np.testing.assert_array_equal(back.affine, nib.load(files / "input.nii.gz").affine)
    restored = json.loads((out / "input_desc-restored.json").read_text())
    assert "exact inverse" in restored["Description"] and restored["Sources"] == [str(_harmonized(files))]
    assert (
        main(
            [
                "structural",
                "restore",
                str(files / "ihf"),
                "--input",
                str(_harmonized(files)),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 2
    )  # never overwritten without --force


def _refused(capsys, args, out):
    assert main(["structural", "restore", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and not out.exists()
    return err


def test_restore_refuses_what_it_cannot_invert(files, tmp_path, capsys):
    out = tmp_path / "restored"
    h = str(_harmonized(files))
    assert "not invertible" in _refused(capsys, [str(files / "hail"), "--input", h], out)
    assert "was harmonized by another model" in _refused(capsys, [str(files / "other"), "--input", h], out)
    assert "has no sidecar input.json beside it" in _refused(
        capsys, [str(files / "ihf"), "--input", str(files / "input.nii.gz")], out
    )
    lonely = tmp_path / "copy"
    lonely.mkdir()
    for name in HARMONIZED[:2]:  # the margin file left behind
        (lonely / name).write_bytes((files / "harmonized" / name).read_bytes())
    err = _refused(capsys, [str(files / "ihf"), "--input", str(lonely / HARMONIZED[0])], out)
    assert f"{HARMONIZED[2]}: is missing" in err


def test_restore_refuses_inconsistent_records(files, tmp_path, capsys):
    out = tmp_path / "restored"
    side = json.loads(_harmonized(files, 1).read_text())

    def copy(name: str, sidecar: dict, margin=None):
        d = tmp_path / name
        d.mkdir()
        (d / HARMONIZED[0]).write_bytes(_harmonized(files).read_bytes())
        (d / HARMONIZED[1]).write_text(json.dumps(sidecar))
        if margin is not None:
            np.save(d / HARMONIZED[2], margin)
        return str(d / HARMONIZED[0])

    short = copy("short", side, np.zeros(5, np.float32))
    assert "holds 5 values, but restoring an image of shape (37, 45, 9) needs" in _refused(
        capsys, [str(files / "ihf"), "--input", short], out
    )
    old = {k: v for k, v in side.items() if k not in ("StyleCode", "TargetScale", "FlowMargin")}
    assert "cannot be restored" in _refused(
        capsys, [str(files / "ihf"), "--input", copy("old", old), "--target-image", str(files / "target.nii.gz")], out
    )
    half = {k: v for k, v in side.items() if k != "TargetScale"}
    assert "records a StyleCode but no TargetScale" in _refused(
        capsys, [str(files / "ihf"), "--input", copy("half", half)], out
    )


def test_apply_refuses_an_existing_output_folder(files, tmp_path, capsys):
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "input_desc-harmonized_flowmargin.npy").write_bytes(b"an earlier result")
    args = [
        "structural",
        "apply",
        str(files / "ihf"),
        "--input",
        str(files / "input.nii.gz"),
        "--target-image",
        str(files / "target.nii.gz"),
        "--out",
        str(tmp_path / "h"),
        "--quiet",
    ]
    assert main(args) == 2
    assert "h: already exists and is not empty; pass --force" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "h").iterdir()] == ["input_desc-harmonized_flowmargin.npy"]
    assert main([*args, "--force"]) == 0  # the folder is replaced as a whole: nothing of the earlier result stays
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == sorted([*HARMONIZED, "dataset_description.json"])
    assert np.load(tmp_path / "h" / HARMONIZED[2]).size > 0


def test_the_residual_inverse_stops_at_the_rounding_floor_and_refuses_what_does_not_contract(monkeypatch):
    """In single precision a fixed-point iteration can end in moves of one unit in the last place back
    and forth, just above a tolerance of 1e-7 of the image's largest value: that is converged; moves
    that stay large are not."""
    from mrharmony.structural.ihf.residual_flow import ResidualBlock

    block = ResidualBlock(4, 8, 2, 1)
    y, s = torch.full((1, 1, 5, 5), 100.0), torch.zeros(1, 8)
    calls = {"n": 0}

    def g(amplitude):
        def g_of(x, _s):
            calls["n"] += 1
            return torch.full_like(x, 1.0) + amplitude * (-1) ** calls["n"]

        return g_of

    monkeypatch.setattr(block, "g", g(1.2e-7 * 100.0))  # oscillates by 2.4e-7 of the largest value
    assert torch.allclose(block.inverse(y, s), y + 1.0, rtol=1e-6)
    assert calls["n"] < 5
    monkeypatch.setattr(block, "g", g(1e-2))  # no contraction: never settles
    with pytest.raises(RuntimeError, match="did not converge"):
        block.inverse(y, s)
