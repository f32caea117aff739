"""Denoising before the SH fit (dipy's MP-PCA), as practice runs it."""

import shutil

import numpy as np
import pytest
import yaml

from mrharmony.errors import InputError


@pytest.fixture(scope="module")
def denoised(tmp_path_factory, tiny_prepared):
    """A copy of the prepared tiny dataset with the input scans' MP-PCA features."""
    from mrharmony.dmri.features.prepare import prepare

    root = tmp_path_factory.mktemp("den") / "tiny"
    shutil.copytree(tiny_prepared, root)
    report = prepare(root, quiet=True, denoise="mppca")
    return root, report


@pytest.mark.parametrize("method", ["mppca"])
def test_denoising_brings_a_scan_closer_to_its_noiseless_render(tiny_prepared, method):
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.denoise import denoise_dwi
    from mrharmony.simulate import render_scan

    ds = load_dataset(tiny_prepared, check_data=False)
    scan = ds.scan("sub-01", ds.input_platform.name)
    dwi, _ = scan.load_dwi()
    mask = scan.load_mask()
    clean = render_scan(tiny_prepared, "sub-01", ds.input_platform.name, noise=False).dwi
    out = denoise_dwi(dwi, mask, method)
    assert out.dtype == np.float32 and out.shape == dwi.shape
    before = np.sqrt(np.mean((dwi[mask] - clean[mask]) ** 2))
    after = np.sqrt(np.mean((out[mask] - clean[mask]) ** 2))
    assert after < 0.9 * before, (method, before, after)
    np.testing.assert_array_equal(out[~mask], dwi[~mask].astype(np.float32))
    np.testing.assert_array_equal(denoise_dwi(dwi, mask, method), out)  # deterministic


def test_prepare_writes_the_denoised_input_beside_the_features(denoised, tiny_prepared):
    import json

    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import feature_paths, load_features

    root, report = denoised
    ds = load_dataset(root, check_data=False)
    inp = ds.input_platform.name
    assert sorted(report.computed) == sorted((s, inp) for s in ds.subjects)  # the input platform only
    nii, side = feature_paths(root, "sub-01", inp, "mppca")
    assert nii.name == "sub-01_model-sh_desc-b0normmppca_dwimap.nii.gz"
    assert json.loads(side.read_text())["denoise"] == "mppca"
    plain, den = (
        load_features(ds, "sub-01", inp, normalized=False),
        load_features(ds, "sub-01", inp, normalized=False, denoise="mppca"),
    )
    assert not np.allclose(plain.data, den.data)
    with pytest.raises(InputError, match=r"run 'mrharmony dmri prepare --denoise other'"):
        load_features(ds, "sub-01", inp, denoise="other")


def test_a_model_trained_on_denoised_input_denoises_the_scans_it_applies_to(denoised, tmp_path):
    """``none`` fitted with data.denoise: mppca records it, and ``apply`` gives exactly the SH fit
    of the scan denoised the same way."""
    import nibabel as nib

    from mrharmony.cli import main
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.denoise import denoise_dwi
    from mrharmony.dmri.features.sh import SHConfig, fit_sh
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.dmri.training import train

    root, _ = denoised
    cfg = {
        "preset": "test",
        "data": {
            "dataset": str(root),
            "targets": ["prisma_st"],
            "split": "subject",
            "test_subjects": ["sub-03"],
            "denoise": "mppca",
        },
        "model": {"method": "none"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = train(tmp_path / "c.yaml", tmp_path / "run", quiet=True)
    assert load_harmonizer(run).denoise == "mppca"
    ds = load_dataset(root, check_data=False)
    scan = ds.scan("sub-03", ds.input_platform.name)
    assert (
        main(
            [
                "dmri",
                "apply",
                str(run),
                "--dwi",
                str(scan.dwi),
                "--bval",
                str(scan.bval),
                "--bvec",
                str(scan.bvec),
                "--mask",
                str(scan.mask),
                "--out",
                str(tmp_path / "out"),
                "--quiet",
            ]
        )
        == 0
    )
    got = nib.load(next((tmp_path / "out").glob("*model-sh_desc-harmonized_dwimap.nii.gz"))).get_fdata()
    dwi, _ = scan.load_dwi()
    bvals, bvecs = scan.gradients()
    mask = scan.load_mask()
    expected = fit_sh(denoise_dwi(dwi, mask, "mppca"), bvals, bvecs, mask, SHConfig())
    np.testing.assert_allclose(got[mask], expected[mask], atol=1e-5)
