"""The paper's hierarchy flow (``ihf``, ``flow: hierarchy``): lifting, decoding, losses, and what
it is not (invertible from its output)."""

import numpy as np
import pytest
import torch

from mrharmony.structural.blocks import style_loss
from mrharmony.structural.ihf import IHFConfig, IHFHarmonizer
from mrharmony.structural.ihf.inference import harmonize_flow
from mrharmony.structural.ihf.losses import self_similarity_loss
from mrharmony.structural.ihf.method import build_flow
from mrharmony.structural.ihf.paper_flow import HierarchyFlow


def _randomized(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("dims,shape", [(2, (3, 1, 37, 29)), (3, (1, 1, 13, 11, 9))])
def test_any_size_in_the_same_size_out_and_the_lift_keeps_the_input(dims, shape):
    torch.manual_seed(0)
    net = _randomized(HierarchyFlow(dims, chunks=(3, 2), hidden=8, style_dim=6, pad=4))
    x = torch.rand(shape)
    code = torch.randn(1, 6)
    y = net(x, code)
    assert y.shape == x.shape and torch.isfinite(y).all()
    lifted, deltas = net.encode(x)
    assert lifted.shape[1] == 6 and len(deltas) == 2
    # the first block's states: s_k = s_{k-1} - d_k, so s_1 + d_1 is the input, exactly
    s1, d1 = net.blocks[0].encode(x)
    torch.testing.assert_close(s1[:, :1] + d1[:, :1], x, rtol=0, atol=1e-6)
    torch.testing.assert_close(s1[:, 2:3] + d1[:, 2:3], s1[:, 1:2], rtol=0, atol=1e-6)


def test_the_style_changes_the_output_and_the_aan_undoes_in_the_lifted_space():
    torch.manual_seed(1)
    net = _randomized(HierarchyFlow(2, chunks=(4, 2), hidden=8, style_dim=5, pad=2), seed=1)
    x = torch.rand(2, 1, 20, 24)
    a, b = net(x, torch.zeros(1, 5)), net(x, torch.ones(1, 5))
    assert (a - b).abs().mean() > 1e-3
    lifted, d = net.blocks[0].encode(x)
    code = torch.randn(1, 5)
    c = net.blocks[0].unfused(lifted, d, code.expand(2, -1))
    back = net.inverse_lifted(0, c, lifted, d, code)
    torch.testing.assert_close(back, lifted, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="no inverse of its images"):
        net.inverse(a, code)


def test_the_paper_losses_are_zero_on_identical_features_and_leave_out_the_most_different_channels():
    f = torch.rand(2, 8, 6, 7)
    assert float(self_similarity_loss(f, f)) == 0.0
    assert float(self_similarity_loss(f, torch.rand(2, 8, 6, 7))) > 0
    g = f.clone()
    g[:, 0] += 5.0  # one channel of ten percent: left out at keep 0.9 (8 channels -> 7 kept)
    assert float(style_loss([f], [g], keep=0.9)) == pytest.approx(0.0, abs=1e-6)
    assert float(style_loss([f], [g], keep=1.0)) > 1.0


def test_configs_and_saved_models_name_the_flow():
    paper = IHFConfig(method="ihf")
    assert paper.flow == "hierarchy"
    net = paper.build().ihf
    assert isinstance(net, HierarchyFlow) and [b.chunks for b in net.blocks] == [10, 4, 4]
    assert net.style.fc.out_features == 64
    h = IHFHarmonizer(net, meta={"model": paper.model_dump(mode="json")})
    assert h.name == "ihf" and not h.invertible
    # a model saved before the flow option is the squeeze design, and keeps its exact inverse
    old = {"method": "ihf", "dims": 2, "levels": 2, "blocks": 3, "hidden": 32, "style_dim": 32}
    old_net = build_flow(old)
    h_old = IHFHarmonizer(old_net, meta={"model": old})
    assert h_old.name == "ihf_squeeze" and h_old.invertible and "squeeze variant" in h_old.title
    x = torch.rand(1, 1, 16, 16)
    code = torch.randn(1, 32)
    torch.testing.assert_close(old_net.inverse(old_net(x, code), code), x, rtol=0, atol=1e-5)


def test_a_hierarchy_flow_harmonizes_an_image_of_any_size():
    torch.manual_seed(2)
    net = _randomized(HierarchyFlow(2, chunks=(3, 2), hidden=8, style_dim=6, pad=3), seed=2)
    rng = np.random.default_rng(0)
    image, target = rng.random((21, 17, 5)).astype(np.float32), rng.random((19, 23, 4)).astype(np.float32)
    mask, tmask = image > 0.2, target > 0.2
    out, record = harmonize_flow(net, image, mask, target, tmask)
    assert out.shape == image.shape and np.isfinite(out).all() and record["FlowMargin"].size == 0


def test_settings_of_the_other_flow_and_a_3d_hierarchy_are_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="levels is not a setting of flow: hierarchy"):
        IHFConfig(method="ihf", levels=3)
    with pytest.raises(ValidationError, match="chunks, pad are not a setting of flow: squeeze"):
        IHFConfig(method="ihf", flow="squeeze", chunks=(2, 2), pad=1)
    with pytest.raises(ValidationError, match="dims: 3 needs flow: squeeze"):
        IHFConfig(method="ihf", dims=3)
    # a hierarchy flow is never taken for invertible, whatever its metadata says
    net = HierarchyFlow(2, chunks=(2,), hidden=4, style_dim=4, pad=1)
    assert not IHFHarmonizer(net).invertible and not IHFHarmonizer(net, meta={"model": {"flow": "squeeze"}}).invertible
