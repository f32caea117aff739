"""HAIL's building blocks: AdaIN, the feature statistics, the networks' shapes and the losses."""

import pytest
import torch

from mrharmony.structural.blocks import channel_stats, style_loss
from mrharmony.structural.hail import (
    HAIL,
    HAILConfig,
    adain,
    consistency_loss,
    content_loss,
)


def _x(seed, shape=(2, 4, 9, 10, 8)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_adain_gives_the_content_the_style_statistics_exactly():
    content = _x(0) * 3 + 1
    style = _x(1) * 0.5 - 2
    mean, std = channel_stats(style)
    out = adain(content, mean, std)
    m2, s2 = channel_stats(out)
    torch.testing.assert_close(m2, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s2, std, atol=1e-4, rtol=1e-4)
    # the content's pattern is kept: per channel, out is an increasing affine map of content
    c = torch.corrcoef(torch.stack([content[0, 0].ravel(), out[0, 0].ravel()]))[0, 1]
    assert c > 0.9999


def test_masked_statistics_ignore_what_is_outside():
    f = _x(2)
    mask = torch.zeros(2, 1, 9, 10, 8)
    mask[..., 2:7, 3:8, 1:6] = 1
    m, s = channel_stats(f, mask)
    inside = f[..., 2:7, 3:8, 1:6]
    torch.testing.assert_close(m, inside.mean(dim=(2, 3, 4), keepdim=True))
    torch.testing.assert_close(s, torch.sqrt(inside.var(dim=(2, 3, 4), keepdim=True, unbiased=False) + 1e-5))
    g = f.clone()
    g[..., 0, 0, 0] = 1e6  # outside the mask
    torch.testing.assert_close(channel_stats(g, mask)[0], m)


@pytest.mark.parametrize("skips", [False, True])
def test_hail_shapes_and_losses(skips):
    torch.manual_seed(0)
    net = HAIL((16, 32, 64), skips=skips)
    x, t = torch.rand(1, 1, 20, 22, 18), torch.rand(1, 1, 20, 22, 18)
    assert net.reconstruct(x).shape == x.shape
    pred, styled, tfeats = net.transfer(x, t)
    assert pred.shape == x.shape
    assert [f.shape[1] for f in tfeats] == [16, 32, 64]
    assert len(styled) == (3 if skips else 1) and styled[-1].shape == tfeats[-1].shape
    pf = net.encoder(pred)
    assert content_loss(pf, styled) >= 0 and style_loss(pf, tfeats) > 0
    assert content_loss(tfeats, tfeats[3 - len(styled) :]) == 0
    assert style_loss(tfeats, tfeats) < 1e-10  # the target's own statistics
    assert consistency_loss(x, x) == 0
    mask = torch.zeros_like(x)
    mask[..., 5:15, 5:15, 5:15] = 1
    assert consistency_loss(x + mask, x, mask) == 1.0
    # every parameter of the decoder gets a gradient from the three losses together
    loss = content_loss(pf, styled) + style_loss(pf, tfeats) + consistency_loss(net(x, x), x)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.decoder.parameters())


def test_the_paper_model_has_two_levels_by_default():
    cfg = HAILConfig(method="hail")
    assert cfg.widths == (16, 32) and not cfg.skips
    assert len(cfg.build().encoder.levels) == 2


def test_odd_sizes_come_back_whole():
    net = HAIL(skips=True)
    x = torch.rand(1, 1, 13, 17, 9)
    assert net.reconstruct(x).shape == x.shape
    assert net(x, torch.rand(1, 1, 11, 10, 12)).shape == x.shape  # the target on another grid
