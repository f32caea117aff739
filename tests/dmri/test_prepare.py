import json
import os

import nibabel as nib
import numpy as np
import pytest

from mrharmony.cli import main
from mrharmony.data import load_dataset
from mrharmony.dmri.features.prepare import (
    feature_dir,
    feature_paths,
    load_features,
    prepare,
)
from mrharmony.dmri.features.sh import SHConfig
from mrharmony.errors import InputError
from tests.helpers import make_dataset


def test_outputs_are_float32_bids_like_derivatives(tiny_prepared):
    ds = load_dataset(tiny_prepared, check_data=False)
    desc = json.loads((feature_dir(tiny_prepared) / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "mrharmony"
    for scan in ds.scans():
        nii, side = feature_paths(tiny_prepared, scan.subject, scan.platform.name)
        img = nib.load(nii)
        assert img.get_data_dtype() == np.float32 and img.shape[3] == 28
        assert nii.name == f"{scan.subject}_model-sh_desc-b0norm_dwimap.nii.gz"
        np.testing.assert_allclose(img.affine, nib.load(scan.dwi).affine)
        meta = json.loads(side.read_text())
        assert meta["sh"]["basis"] == "descoteaux07" and meta["sh"]["sh_order_max"] == 6
        assert meta["sh"]["smooth"] == 0.006 and meta["sh"]["legacy"] is False


def test_normalized_features_have_zero_mean_unit_std_in_mask(tiny_prepared):
    ds = load_dataset(tiny_prepared, check_data=False)
    f = load_features(ds, "sub-02", "connectom_sa")
    vals = f.data[f.mask]
    np.testing.assert_allclose(vals.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(vals.std(0), 1, atol=1e-3)
    assert np.all(f.data[~f.mask] == 0)
    raw = load_features(ds, "sub-02", "connectom_sa", normalized=False)
    np.testing.assert_allclose(f.stats.invert(f.data, f.mask), raw.data, atol=1e-5)
    # the l=0 coefficient of S/S0 is positive: sqrt(4 pi) times the mean normalized signal
    assert raw.data[raw.mask][:, 0].mean() > 0.2


def test_second_run_does_no_work_and_a_changed_input_is_redone(tmp_path):
    root = make_dataset(tmp_path / "ds")
    first = prepare(root, quiet=True)
    assert len(first.computed) == 6 and not first.cached
    nii, _ = feature_paths(root, "s1", "old")
    before = nii.stat().st_mtime_ns
    second = prepare(root, quiet=True)
    assert not second.computed and len(second.cached) == 6
    assert nii.stat().st_mtime_ns == before
    # touch one input: only that scan is recomputed
    (root / "s1" / "old" / "dwi.bval").write_text((root / "s1" / "old" / "dwi.bval").read_text())
    os.utime(root / "s1" / "old" / "dwi.bval", ns=(before + 10**9, before + 10**9))
    third = prepare(root, quiet=True)
    assert third.computed == [("s1", "old")]
    # other settings: everything is recomputed
    fourth = prepare(root, cfg=SHConfig(sh_order_max=4), quiet=True)
    assert len(fourth.computed) == 6
    assert nib.load(nii).shape[3] == 15


def test_bad_scan_stops_before_anything_is_written(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    img = nib.load(root / "s2" / "fine" / "dwi.nii.gz")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    data[3, 3, 3, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), root / "s2" / "fine" / "dwi.nii.gz")
    assert main(["dmri", "prepare", str(root), "--quiet"]) == 2
    assert "s2/fine/dwi.nii.gz: has 1 voxel with NaN or infinite values." in capsys.readouterr().err
    assert not (root / "derivatives").exists()


def test_too_few_directions_named_in_prepare(tmp_path, capsys):
    from tests.helpers import PLATFORMS

    plats = [dict(p) for p in PLATFORMS]
    plats[1]["n_directions"] = 20
    root = make_dataset(tmp_path / "ds", platforms=plats)
    assert main(["dmri", "prepare", str(root), "--quiet"]) == 2
    assert "s1/new/dwi.bval: has 20 directions on the b=1200 shell, too few for SH order 6" in capsys.readouterr().err
    assert main(["dmri", "prepare", str(root), "--quiet", "--sh-order", "4"]) == 0


def test_config_with_a_typo(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    cfg = tmp_path / "sh.yaml"
    cfg.write_text("sh_order_max: 6\nsmoth: 0.01\n")
    assert main(["dmri", "prepare", str(root), "--config", str(cfg)]) == 2
    assert f"{cfg}: unknown key 'smoth'." in capsys.readouterr().err


def test_features_from_a_newer_format_are_refused(tmp_path):
    root = make_dataset(tmp_path / "ds")
    prepare(root, quiet=True)
    _, side = feature_paths(root, "s1", "new")
    meta = json.loads(side.read_text())
    meta["format_version"] = 99
    side.write_text(json.dumps(meta))
    ds = load_dataset(root, check_data=False)
    with pytest.raises(InputError, match=r"written by a newer mrharmony \(format version 99"):
        load_features(ds, "s1", "new")


def test_missing_features_say_how_to_make_them(tmp_path):
    root = make_dataset(tmp_path / "ds")
    ds = load_dataset(root, check_data=False)
    with pytest.raises(InputError, match="run 'mrharmony dmri prepare'"):
        load_features(ds, "s1", "old")
