"""Bad input: each case is a real file on disk, one clear sentence naming the file, exit code 2."""

import gzip
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mrharmony.cli import main
from mrharmony.data import load_dataset
from mrharmony.data.gradients import read_gradients
from mrharmony.errors import InputError
from tests.helpers import grid_affine, make_dataset


def _rewrite_dwi(path, fn):
    img = nib.load(path)
    data = fn(np.asanyarray(img.dataobj))
    nib.save(nib.Nifti1Image(data, img.affine), path)


def _edit_yaml(root, fn):
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    fn(spec)
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec))


def _set_affine(path, affine):
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), affine), path)


def _bvec_rows(root, fn):
    p = root / "s1" / "old" / "dwi.bvec"
    v = np.loadtxt(p)
    v = fn(v)
    np.savetxt(p, v, fmt="%.6f")


def _nan(d):
    d = d.astype(np.float32)
    d[2, 2, 2, 3] = np.nan
    return d


def _inf(d):
    d = d.astype(np.float32)
    d[1, 2, 2, 5] = np.inf
    return d


def _flipped_x(affine):
    a = affine.copy()
    a[0, 0] *= -1
    return a


S1 = "s1/old"
CASES = {
    # name: (mutation(root), file named in the message (relative), message pattern)
    "dataset.yaml missing": (lambda r: (r / "dataset.yaml").unlink(), "dataset.yaml", "is missing"),
    "typo'd key in dataset.yaml": (
        lambda r: _edit_yaml(r, lambda s: s["platforms"][0].update(voxle_size=2)),
        "dataset.yaml",
        r"unknown key 'platforms.0.voxle_size'",
    ),
    "two input platforms": (
        lambda r: _edit_yaml(r, lambda s: s["platforms"][1].update(role="input")),
        "dataset.yaml",
        "exactly one platform must have role 'input'",
    ),
    "unknown role": (
        lambda r: _edit_yaml(r, lambda s: s["platforms"][1].update(role="output")),
        "dataset.yaml",
        "invalid value for 'platforms.1.role'",
    ),
    "not YAML": (lambda r: (r / "dataset.yaml").write_text("platforms: [unclosed\n"), "dataset.yaml", "not valid YAML"),
    "listed subject missing": (lambda r: shutil.rmtree(r / "s2"), "s2", "is missing"),
    "platform missing for a subject": (
        lambda r: shutil.rmtree(r / "s2" / "fine"),
        "s2/fine",
        "subject s2 has no scan on platform fine",
    ),
    "dwi missing": (lambda r: (r / S1 / "dwi.nii.gz").unlink(), f"{S1}/dwi.nii.gz", "is missing"),
    "bval missing": (lambda r: (r / S1 / "dwi.bval").unlink(), f"{S1}/dwi.bval", "is missing"),
    "bvec missing": (lambda r: (r / S1 / "dwi.bvec").unlink(), f"{S1}/dwi.bvec", "is missing"),
    "mask missing": (lambda r: (r / S1 / "mask.nii.gz").unlink(), f"{S1}/mask.nii.gz", "is missing"),
    "truncated dwi": (
        lambda r: (r / S1 / "dwi.nii.gz").write_bytes((r / S1 / "dwi.nii.gz").read_bytes()[:300]),
        f"{S1}/dwi.nii.gz",
        "could not be read as NIfTI",
    ),
    "dwi not NIfTI": (
        lambda r: (r / S1 / "dwi.nii.gz").write_bytes(gzip.compress(b"hello world" * 50)),
        f"{S1}/dwi.nii.gz",
        "could not be read as NIfTI",
    ),
    "3D dwi": (
        lambda r: _rewrite_dwi(r / S1 / "dwi.nii.gz", lambda d: d[..., 0]),
        f"{S1}/dwi.nii.gz",
        "is 3D .* must be 4D",
    ),
    "mask of another shape": (
        lambda r: nib.save(nib.Nifti1Image(np.ones((5, 6, 4), np.uint8), grid_affine(2.4)), r / S1 / "mask.nii.gz"),
        f"{S1}/mask.nii.gz",
        r"has shape \(5, 6, 4\)",
    ),
    "mask on another affine": (
        lambda r: _set_affine(r / S1 / "mask.nii.gz", grid_affine(2.4, corner=(0, 0, 0))),
        f"{S1}/mask.nii.gz",
        "affine that differs",
    ),
    "empty mask": (
        lambda r: nib.save(nib.Nifti1Image(np.zeros((6, 6, 4), np.uint8), grid_affine(2.4)), r / S1 / "mask.nii.gz"),
        f"{S1}/mask.nii.gz",
        "is empty",
    ),
    "NaN voxels": (lambda r: _rewrite_dwi(r / S1 / "dwi.nii.gz", _nan), f"{S1}/dwi.nii.gz", "1 voxel with NaN"),
    "Inf voxels": (lambda r: _rewrite_dwi(r / S1 / "dwi.nii.gz", _inf), f"{S1}/dwi.nii.gz", "NaN or infinite"),
    "bval count": (
        lambda r: (r / S1 / "dwi.bval").write_text("0 0 " + "1200 " * 29),
        f"{S1}/dwi.bval",
        "has 31 b-values but the DWI series has 32 volumes",
    ),
    "bvec count": (lambda r: _bvec_rows(r, lambda v: v[:, :-1]), f"{S1}/dwi.bvec", "has 31 directions"),
    "bvec two rows": (lambda r: _bvec_rows(r, lambda v: v[:2]), f"{S1}/dwi.bvec", "must hold three rows"),
    "bvec not unit": (
        lambda r: _bvec_rows(r, lambda v: np.where(np.arange(v.shape[1]) == 5, v * 0.8, v)),
        f"{S1}/dwi.bvec",
        "volume 5 has length 0.800",
    ),
    "bvec zero on a DW volume": (
        lambda r: _bvec_rows(r, lambda v: np.where(np.arange(v.shape[1]) == 7, 0 * v, v)),
        f"{S1}/dwi.bvec",
        "volume 7 has length 0.000",
    ),
    "no b0": (lambda r: (r / S1 / "dwi.bval").write_text("1200 " * 32), f"{S1}/dwi.bval", "has no b=0 volume"),
    "negative bval": (
        lambda r: (r / S1 / "dwi.bval").write_text("0 -5 " + "1200 " * 30),
        f"{S1}/dwi.bval",
        "negative b-values",
    ),
    "text in bval": (
        lambda r: (r / S1 / "dwi.bval").write_text("0 0 b1200 " + "1200 " * 29),
        f"{S1}/dwi.bval",
        "not a number",
    ),
    "voxel size unlike dataset.yaml": (
        lambda r: _edit_yaml(r, lambda s: s["platforms"][1].update(voxel_size=2.0)),
        "s1/new/dwi.nii.gz",
        "declares 2 x 2 x 2 mm",
    ),
    "affines disagree between platforms": (
        lambda r: (
            _set_affine(r / "s2" / "new" / "dwi.nii.gz", grid_affine(2.4, corner=(-8.0, -20.0, 5.0)))
            or _set_affine(r / "s2" / "new" / "mask.nii.gz", grid_affine(2.4, corner=(-8.0, -20.0, 5.0)))
        ),
        "s2/new/dwi.nii.gz",
        r"disagrees with the input platform's scan by 2.00 mm",
    ),
    "oriented differently": (
        lambda r: [
            _set_affine(r / "s1" / "new" / f, _flipped_x(grid_affine(2.4))) for f in ("dwi.nii.gz", "mask.nii.gz")
        ],
        "s1/new/dwi.nii.gz",
        "oriented differently",
    ),
}


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds")


def test_the_clean_dataset_is_valid(dataset):
    ds = load_dataset(dataset)
    assert ds.input_platform.name == "old" and ds.voxel_ratio("fine") == 2


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_sentence_naming_the_file(dataset, case, capsys):
    mutate, rel, pattern = CASES[case]
    mutate(dataset)
    with pytest.raises(InputError) as err:
        load_dataset(dataset)
    msg = str(err.value)
    assert msg.startswith(str(dataset / rel)), msg
    assert re.search(pattern, msg), msg
    assert "\n" not in msg and msg.endswith(".")
    # the command line: exit code 2, the same sentence on stderr, nothing on stdout
    capsys.readouterr()
    assert main(["validate", str(dataset)]) == 2
    out, errtext = capsys.readouterr()
    assert out == "" and errtext.strip().endswith(msg) and errtext.count("\n") == 1


def test_dataset_folder_missing(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: does not exist." in capsys.readouterr().err


def test_non_integer_voxel_ratio(tmp_path):
    from tests.helpers import PLATFORMS

    plats = [dict(p) for p in PLATFORMS[:2]]
    plats[1]["voxel_size"] = 1.6
    root = tmp_path / "ds"
    make_dataset(root, platforms=plats)
    # rewrite the target at 1.6 mm on a grid of the same extent
    for s in ("s1", "s2"):
        for f in ("dwi.nii.gz", "mask.nii.gz"):
            img = nib.load(root / s / "new" / f)
            nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, :], grid_affine(1.6)), root / s / "new" / f)
    with pytest.raises(
        InputError, match=r"s1/new/dwi.nii.gz: has voxel size 1.6 x 1.6 x 1.6 mm, which does not divide"
    ):
        load_dataset(root)


# property-based checks of the gradient-table validator

unit = st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3).filter(lambda v: np.linalg.norm(v) > 0.1)


def _write(tmp_path, bvals, bvecs):
    bp, vp = tmp_path / "dwi.bval", tmp_path / "dwi.bvec"
    bp.write_text(" ".join(repr(float(b)) for b in bvals) + "\n")
    vp.write_text("\n".join(" ".join(repr(float(x)) for x in row) for row in np.asarray(bvecs).T) + "\n")
    return bp, vp


@settings(max_examples=60, deadline=None)
@given(dirs=st.lists(unit, min_size=1, max_size=40), n_b0=st.integers(1, 4), b=st.floats(100, 5000, allow_nan=False))
def test_any_valid_table_is_accepted_and_normalized(tmp_path_factory, dirs, n_b0, b):
    d = np.array(dirs, float)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    bvals = np.r_[np.zeros(n_b0), np.full(len(d), b)]
    bvecs = np.r_[np.zeros((n_b0, 3)), d]
    bp, vp = _write(tmp_path_factory.mktemp("g"), bvals, bvecs)
    got_b, got_v = read_gradients(bp, vp, n_volumes=len(bvals))
    np.testing.assert_allclose(got_b, bvals)
    np.testing.assert_allclose(np.linalg.norm(got_v[n_b0:], axis=1), 1.0, atol=1e-9)
    assert np.all(got_v[:n_b0] == 0)


@settings(max_examples=60, deadline=None)
@given(
    dirs=st.lists(unit, min_size=1, max_size=20),
    which=st.integers(0, 19),
    scale=st.one_of(st.floats(0.0, 0.985), st.floats(1.015, 3.0)),
)
def test_any_wrong_length_direction_is_refused(tmp_path_factory, dirs, which, scale):
    d = np.array(dirs, float)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    i = which % len(d)
    d[i] *= scale
    bvals = np.r_[0.0, np.full(len(d), 1000.0)]
    bp, vp = _write(tmp_path_factory.mktemp("g"), bvals, np.r_[np.zeros((1, 3)), d])
    with pytest.raises(InputError, match=rf"dwi.bvec: direction of volume {i + 1} has length"):
        read_gradients(bp, vp)


@settings(max_examples=40, deadline=None)
@given(n_vals=st.integers(2, 30), n_vols=st.integers(2, 30))
def test_counts_must_match_volumes(tmp_path_factory, n_vals, n_vols):
    d = np.tile([[1.0, 0.0, 0.0]], (n_vals - 1, 1))
    bp, vp = _write(tmp_path_factory.mktemp("g"), np.r_[0.0, np.full(n_vals - 1, 1000.0)], np.r_[np.zeros((1, 3)), d])
    if n_vals == n_vols:
        read_gradients(bp, vp, n_volumes=n_vols)
    else:
        with pytest.raises(InputError, match=f"has {n_vals} b-values but the DWI series has {n_vols} volumes"):
            read_gradients(bp, vp, n_volumes=n_vols)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.sampled_from([1, 2]), fill=st.floats(0.05, 0.95))
def test_mask_overlap_properties(seed, r, fill):
    """The co-registration check's overlap: 1 for the same brain on an r-times finer grid,
    symmetric on one grid, within [0, 1], and below the threshold for disjoint brains."""
    from mrharmony.data.validate import MIN_MASK_DICE, mask_dice

    rng = np.random.default_rng(seed)
    a = rng.random((6, 5, 4)) < fill
    a[0, 0, 0] = True
    fine = a.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    assert mask_dice(a, fine) == pytest.approx(1.0)
    b = rng.random((6, 5, 4)) < fill
    assert mask_dice(a, b) == pytest.approx(mask_dice(b, a))
    assert 0.0 <= mask_dice(a, b) <= 1.0
    assert mask_dice(a, ~a) == 0.0 < MIN_MASK_DICE
