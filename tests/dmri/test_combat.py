"""ComBat on FA / MD maps: applying saved maps (core) and learning them with neuroHarmonize
(the ``combat`` extra; these tests run in its own environment, see scripts/test.sh)."""

import numpy as np
import pytest
import yaml

from mrharmony.dmri.combat import ComBatHarmonizer
from mrharmony.dmri.features.dti import dti_from_sh
from mrharmony.dmri.loading import load_harmonizer
from mrharmony.dmri.statistical import CommonSpace
from mrharmony.errors import InputError


def _held_out(root, platform):
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import load_features

    return load_features(load_dataset(root, check_data=False), "sub-03", platform)


def test_saved_combat_maps_adjust_fa_and_md_voxelwise(tiny_prepared, tmp_path):
    from mrharmony.data import load_dataset
    from mrharmony.dmri.harmonizer import platform_reference

    ds = load_dataset(tiny_prepared, check_data=False)
    ref = platform_reference(ds, ["prisma_st"], ["sub-01", "sub-02"])
    fin = _held_out(tiny_prepared, "ge_st")
    h = ComBatHarmonizer(
        targets=["prisma_st"], ratios={"prisma_st": 1}, reference=ref, settings={"registration": "affine"}
    )
    # the reference space is the scan's own: maps apply as they are
    h.space = CommonSpace(
        image=fin.stats.invert(fin.data, fin.mask)[..., 0] * fin.mask,
        mask=fin.mask,
        affine=fin.affine,
        registration="affine",
    )
    maps = np.zeros((*fin.mask.shape, 4), np.float32)
    maps[..., 0], maps[..., 1], maps[..., 2], maps[..., 3] = 0.5, 0.1, 1.2, 1e-5
    h.maps = {"prisma_st": maps}
    h.fallback = {"prisma_st": np.array([1, 0, 1, 0], np.float32)}
    h.settings["fallback"] = {"prisma_st": [1, 0, 1, 0]}
    again = load_harmonizer(h.save(tmp_path / "combat"))
    assert not again.predicts_sh
    with pytest.raises(InputError, match="FA and MD maps"):
        again.predict(fin)
    fa_h, md_h, dec_h = again.predict_dti(fin)["prisma_st"]
    bvals, bvecs = again.target_gradients("prisma_st")
    fa, md, _ = dti_from_sh(fin.stats.invert(fin.data, fin.mask), bvals, bvecs, ref["sh"], fin.mask)
    m = fin.mask
    np.testing.assert_allclose(fa_h[m], np.clip(0.5 * fa[m] + 0.1, 0, 1), atol=1e-5)
    np.testing.assert_allclose(md_h[m], 1.2 * md[m] + 1e-5, rtol=1e-4)
    assert dec_h.shape == (*m.shape, 3)


def test_combat_without_neuroharmonize_fails_before_any_work(tiny_prepared, tmp_path, monkeypatch):
    import sys

    from mrharmony.dmri.training import train

    monkeypatch.setitem(sys.modules, "neuroHarmonize", None)  # as if not installed
    cfg = tmp_path / "combat.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": str(tiny_prepared), "split": "subject", "test_subjects": ["sub-03"]},
                "model": {"method": "combat"},
            }
        )
    )
    with pytest.raises(InputError, match=r"mrharmony\[combat\]"):
        train(cfg, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.combat
def test_combat_learned_with_neuroharmonize_moves_fa_towards_the_target(tiny_prepared, tmp_path):
    pytest.importorskip("neuroHarmonize")
    import pandas as pd
    from neuroHarmonize import harmonizationApply, harmonizationLearn

    from mrharmony.dmri.training import train

    runs = {}
    for method in ("none", "combat"):
        cfg = tmp_path / f"{method}.yaml"
        # the tiny subjects share the MNI box and are too small a block to register: no registration
        model = {"method": method, **({"registration": "none"} if method == "combat" else {})}
        cfg.write_text(
            yaml.safe_dump(
                {
                    "data": {"dataset": str(tiny_prepared), "split": "subject", "test_subjects": ["sub-03"]},
                    "model": model,
                }
            )
        )
        runs[method] = load_harmonizer(train(cfg, tmp_path / method, quiet=True))
    fin, ft = _held_out(tiny_prepared, "ge_st"), _held_out(tiny_prepared, "connectom_st")
    bvals, bvecs = runs["none"].target_gradients("connectom_st")
    fa_t = dti_from_sh(ft.stats.invert(ft.data, ft.mask), bvals, bvecs, ft.sh, ft.mask)[0]
    m = ft.mask & fin.mask
    gap = {k: abs(float(h.predict_dti(fin)["connectom_st"][0][m].mean() - fa_t[m].mean())) for k, h in runs.items()}
    assert gap["combat"] < 0.75 * gap["none"], gap  # learned from two subjects only
    # the stored maps are ComBat's own adjustment: slope and offset reproduce neuroHarmonize
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(0.3, 0.05, (4, 50)), rng.normal(0.4, 0.08, (4, 50))])
    covars = pd.DataFrame({"SITE": ["a"] * 4 + ["b"] * 4})
    model, _ = harmonizationLearn(data, covars, ref_batch="b", seed=0)
    probe = harmonizationApply(
        np.stack([np.zeros(50), np.ones(50), data[-1]]), pd.DataFrame({"SITE": ["a", "a", "b"]}), model
    )
    direct = harmonizationApply(np.vstack([data[:4], data[-1:]]), pd.DataFrame({"SITE": ["a"] * 4 + ["b"]}), model)[:4]
    np.testing.assert_allclose(direct, (probe[1] - probe[0]) * data[:4] + probe[0], atol=1e-8)
