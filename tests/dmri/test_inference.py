import numpy as np
import pytest

from mrharmony.dmri.inference import predict_patchwise, predict_volume
from mrharmony.dmri.networks.msp import MSP
from mrharmony.dmri.networks.mtl import CPM, HNED
from mrharmony.dmri.networks.single import CNNRISH, DIQT, SHResNet

TARGETS = {"prisma_st": 1, "connectom_sa": 2}


def _nets():
    yield DIQT("connectom_sa", 28, 2)
    yield CNNRISH("prisma_st", 28, 1)
    yield SHResNet("connectom_sa", 28, 2)
    yield CPM(TARGETS, 28)
    yield HNED(TARGETS, 28)
    yield MSP({"prisma_st": SHResNet("prisma_st", 28, 1), "connectom_sa": DIQT("connectom_sa", 28, 2)})


@pytest.mark.parametrize("net", list(_nets()), ids=lambda n: n.name)
def test_tiled_inference_equals_patch_by_patch(net):
    import torch

    torch.manual_seed(0)
    vol = np.random.default_rng(1).standard_normal((13, 10, 9, 28)).astype(np.float32)
    with torch.no_grad():
        outs = net(torch.zeros(1, 28, 11, 11, 11))
    sizes = {t: o[-1].shape[-1] for t, o in outs.items()}
    ratios = {t: TARGETS.get(t, 1) for t in sizes}
    full = predict_volume(net, vol, output_sizes=sizes, ratios=ratios, patch=11, tile=16)
    vox = np.argwhere(np.ones(vol.shape[:3], bool))
    ref = predict_patchwise(net, vol, vox, output_sizes=sizes, ratios=ratios, patch=11)
    for t, r in ratios.items():
        assert full[t].shape == (13 * r, 10 * r, 9 * r, 28)
        blocks = np.stack([full[t][a * r : (a + 1) * r, b * r : (b + 1) * r, d * r : (d + 1) * r] for a, b, d in vox])
        np.testing.assert_allclose(blocks, ref[t], atol=1e-5)


def test_tile_size_does_not_change_the_result():
    import torch

    torch.manual_seed(0)
    net = DIQT("t", 28, 2)
    vol = np.random.default_rng(2).standard_normal((20, 17, 12, 28)).astype(np.float32)
    a = predict_volume(net, vol, output_sizes={"t": 14}, ratios={"t": 2}, patch=11, tile=12)["t"]
    b = predict_volume(net, vol, output_sizes={"t": 14}, ratios={"t": 2}, patch=11, tile=40)["t"]
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="too small"):
        predict_volume(net, vol, output_sizes={"t": 14}, ratios={"t": 2}, patch=11, tile=4)


def test_a_region_skips_tiles_without_changing_the_voxels_it_holds():
    import torch

    torch.manual_seed(0)
    net = DIQT("t", 28, 2)
    vol = np.random.default_rng(2).standard_normal((30, 12, 10, 28)).astype(np.float32)
    region = np.zeros(vol.shape[:3], bool)
    region[2:5, 3:6, 4:6] = True
    kw = {"output_sizes": {"t": 14}, "ratios": {"t": 2}, "patch": 11, "tile": 14}
    full = predict_volume(net, vol, **kw)["t"]
    part = predict_volume(net, vol, region=region, **kw)["t"]
    fine = region.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(part[fine], full[fine])
    assert not part[40:].any() and full[40:].any()  # the tiles far from the region were skipped
    with pytest.raises(ValueError, match="region of shape"):
        predict_volume(net, vol, region=region[:-1], **kw)
