import pytest
import torch

from mrharmony.dmri.networks.blocks import center_crop
from mrharmony.dmri.networks.msp import MSP
from mrharmony.dmri.networks.mtl import CPM, HNED
from mrharmony.dmri.networks.single import CNNRISH, DIQT, SHResNet

C = 28
TARGETS = {"prisma_st": 1, "connectom_st": 1, "connectom_sa": 2}


def _x(n=2, size=11, seed=0):
    return torch.randn(n, C, size, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "cls,out1,z1,out2,z2",
    [
        (DIQT, 7, (100, 9), 14, (100, 9)),
        (CNNRISH, 5, (64, 5), 10, (64, 10)),
        (SHResNet, 5, (128, 5), 10, (128, 10)),
    ],
)
def test_single_network_shapes_at_both_resolutions(cls, out1, z1, out2, z2):
    for ratio, out, (zc, zs) in ((1, out1, z1), (2, out2, z2)):
        net = cls("t", C, ratio)
        y, z = net.forward_features(_x())
        assert y.shape == (2, C, out, out, out)
        assert z.shape == (2, zc, zs, zs, zs) and net.z_channels == zc
        assert net(_x())["t"][0].shape == y.shape


def test_diqt_with_reversible_blocks_keeps_shapes():
    net = DIQT("t", C, 2, revnet_blocks=2)
    y, _ = net.forward_features(_x())
    assert y.shape == (2, C, 14, 14, 14)
    assert sum(p.numel() for p in net.parameters()) > sum(p.numel() for p in DIQT("t", C, 2).parameters())


def test_diqt_with_a_skip_starts_as_the_identity_and_stays_tileable():
    """``skip``: the output is the input's centre (repeated for a 2x target) plus a correction
    that starts at zero; a bigger input still gives the patch output at its centre."""
    x = _x()
    for ratio in (1, 2):
        torch.manual_seed(0)
        net = DIQT("t", C, ratio, skip=True).eval()
        with torch.no_grad():
            y, _ = net.forward_features(x)
        base = center_crop(x, 7)
        for axis in (2, 3, 4):
            base = base.repeat_interleave(ratio, dim=axis)
        torch.testing.assert_close(y, base)
        with torch.no_grad():
            for p in net.out.parameters():
                p.add_(0.1 * torch.randn_like(p))
            big = _x(1, 13)
            small = net(big[..., 1:12, 1:12, 1:12])["t"][0]
            torch.testing.assert_close(center_crop(net(big)["t"][0], small.shape[-1]), small, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(net(x)["t"][0], base)
    torch.manual_seed(0)
    plain = DIQT("t", C, 1)
    torch.manual_seed(0)
    assert all(
        torch.equal(a, b) for a, b in zip(plain.conv1.parameters(), DIQT("t", C, 1, skip=True).conv1.parameters())
    )


def test_valid_convolutions_make_outputs_translation_equivariant():
    """A bigger input gives a bigger output whose centre equals the patch output: tiling is exact."""
    torch.manual_seed(0)
    for net in (
        DIQT("t", C, 2),
        CNNRISH("t", C, 2),
        SHResNet("t", C, 2),
        CPM(TARGETS, C),
        HNED(TARGETS, C),
        _msp(True),
    ):
        net.eval()
        big = _x(1, 13)
        with torch.no_grad():
            small_out = net(big[..., 1:12, 1:12, 1:12])
            big_out = net(big)
        for t, outs in small_out.items():
            for o_small, o_big in zip(outs, big_out[t]):
                torch.testing.assert_close(center_crop(o_big, o_small.shape[-1]), o_small, atol=1e-5, rtol=1e-5)


def test_multitask_shapes():
    cpm = CPM(TARGETS, C, stages=2)(_x())
    assert [o.shape[-1] for o in cpm["prisma_st"]] == [7, 5]
    assert [o.shape[-1] for o in cpm["connectom_sa"]] == [14, 10]
    hned = HNED(TARGETS, C)(_x())
    assert {t: o[0].shape[-1] for t, o in hned.items()} == {"prisma_st": 7, "connectom_st": 5, "connectom_sa": 10}
    assert all(o[0].shape[1] == C for o in hned.values())


def _msp(mixed=False):
    first = {
        "prisma_st": (SHResNet if mixed else DIQT)("prisma_st", C, 1),
        "connectom_st": DIQT("connectom_st", C, 1),
        "connectom_sa": (CNNRISH if mixed else DIQT)("connectom_sa", C, 2),
    }
    return MSP(first)


@pytest.mark.parametrize("mixed", [False, True])
def test_msp_equals_its_first_stage_at_alpha_zero(mixed):
    torch.manual_seed(1)
    msp = _msp(mixed).eval()
    x = _x()
    with torch.no_grad():
        out = msp(x)
        for t, net in msp.first.items():
            y1, _ = net.forward_features(x)
            torch.testing.assert_close(out[t][0], y1, atol=0, rtol=0)
            assert torch.equal(out[t][1], center_crop(y1, out[t][1].shape[-1]))


def test_msp_second_stage_is_equation_one():
    torch.manual_seed(2)
    msp = _msp().eval()
    msp.set_alpha(0.3)
    x = _x()
    with torch.no_grad():
        out = msp(x)
        feats = {t: net.forward_features(x) for t, net in msp.first.items()}
        t = "connectom_st"
        terms = [msp.connections[f"{i}__{t}"](feats[i][1]) for i in msp.targets if i != t]
        n = out[t][1].shape[-1]
        y1 = center_crop(feats[t][0], n)
        expected = 0.7 * y1 + 0.3 / 3 * (sum(center_crop(v, n) for v in terms) + y1)
        torch.testing.assert_close(out[t][1], expected, atol=1e-5, rtol=1e-5)


def test_every_msp_subnetwork_gets_gradients_when_alpha_is_positive():
    msp = _msp(mixed=True)
    msp.set_alpha(0.5)
    out = msp(_x())
    sum((o**2).mean() for outs in out.values() for o in outs).backward()
    for name, p in msp.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert len(msp.connections) == 6


@pytest.mark.parametrize(
    "make",
    [
        lambda: DIQT("connectom_sa", C, 2),
        lambda: CNNRISH("prisma_st", C, 1),
        lambda: SHResNet("connectom_sa", C, 2),
        lambda: CPM(TARGETS, C),
        lambda: HNED(TARGETS, C),
        lambda: _msp(),
    ],
    ids=["diqt", "cnn_rish", "shresnet", "cpm", "hned", "msp"],
)
def test_each_network_overfits_a_fixed_small_batch(make):
    torch.manual_seed(3)
    net = make()
    if isinstance(net, MSP):
        net.set_alpha(1.0)
    x = _x(1, seed=4)
    targets = {
        t: torch.randn(1, C, 22, 22, 22, generator=torch.Generator().manual_seed(5))
        if r == 2
        else torch.randn(1, C, 11, 11, 11, generator=torch.Generator().manual_seed(6))
        for t, r in TARGETS.items()
    }
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)

    def loss_fn():
        out = net(x)
        return sum(torch.mean((o - center_crop(targets[t], o.shape[-1])) ** 2) for t, outs in out.items() for o in outs)

    first = float(loss_fn())
    # MSP (three first-stage networks and their connections) memorizes as fast with a third of the
    # steps, each three times as costly
    for _ in range(60 if isinstance(net, MSP) else 200):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert float(loss_fn()) < 0.25 * first  # memorizes noise targets: the loss falls four-fold
