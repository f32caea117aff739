"""IHF-Harmony's residual variant: exactly invertible at any size, a contraction in every block,
the same at every voxel (nothing tied to pixel parity), the identity before training."""

import numpy as np
import pytest
import torch

from mrharmony.structural.ihf.residual_flow import LIPSCHITZ, ResidualIHF


def _perturbed(net, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("dims, shape", [(2, (3, 1, 23, 17)), (3, (1, 1, 13, 11, 9))])
def test_the_inverse_gives_the_input_back_at_any_size(dims, shape):
    torch.manual_seed(0)
    net = _perturbed(ResidualIHF(dims=dims, levels=2, blocks=2, hidden=8, style_dim=8)).eval()
    x = torch.rand(shape)
    code = net.style_code(torch.rand((1, 1) + shape[2:]))
    with torch.no_grad():
        y = net(x, code)
        back = net.inverse(y, code)
    assert float((y - x).abs().max()) > 1e-2  # it changed the image
    assert float(torch.linalg.vector_norm(back - x) / torch.linalg.vector_norm(x)) < 1e-5  # the goal of the design


def test_every_block_is_a_contraction_in_the_image():
    torch.manual_seed(1)
    net = _perturbed(ResidualIHF(dims=2, levels=2, blocks=1, hidden=8, style_dim=8), scale=2.0)
    s = net.style_code(torch.rand(1, 1, 16, 16))
    for block in net.blocks:
        for _ in range(5):
            a, b = torch.rand(2, 1, 1, 20, 20)
            ratio = torch.linalg.vector_norm(block.g(a, s) - block.g(b, s)) / torch.linalg.vector_norm(a - b)
            assert float(ratio) <= LIPSCHITZ + 1e-6


def test_it_is_the_same_at_every_voxel_and_the_identity_before_training():
    torch.manual_seed(2)
    fresh = ResidualIHF(dims=2, hidden=8, style_dim=8)
    x = torch.rand(1, 1, 32, 32)
    code = fresh.style_code(x)
    torch.testing.assert_close(fresh(x, code), x)
    net = _perturbed(fresh)
    with torch.no_grad():
        y, shifted = net(x, code), net(torch.roll(x, 1, dims=2), code)
    # a shift of one voxel (odd, unlike a squeeze's period) shifts the output, away from the borders
    inner = (slice(None), slice(None), slice(12, 20), slice(12, 20))
    np.testing.assert_allclose(torch.roll(y, 1, dims=2)[inner].numpy(), shifted[inner].numpy(), atol=1e-5)
