"""IHF-Harmony's networks: squeeze, subtractive coupling, AAN, exact invertibility, the VGG loader."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mrharmony.errors import InputError
from mrharmony.structural.ihf.losses import self_similarity_loss
from mrharmony.structural.ihf.squeeze_flow import AAN, SqueezeIHF, squeeze, unsqueeze
from mrharmony.structural.ihf.vgg import VGG19, VGGFeatures, load_vgg_weights


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (2, 1, 4, 6, 8)])
def test_squeeze_is_a_permutation_and_unsqueeze_its_inverse(shape):
    x = _rand(*shape)
    y = squeeze(x)
    dims = len(shape) - 2
    assert y.shape == (shape[0], shape[1] * 2**dims, *[s // 2 for s in shape[2:]])
    assert torch.equal(unsqueeze(y), x)
    assert torch.equal(torch.sort(y.flatten())[0], torch.sort(x.flatten())[0])
    # a 2x2 block of the first image becomes the channels of one position
    if dims == 2:
        assert sorted(y[0, :4, 0, 0].tolist()) == sorted(x[0, 0, :2, :2].flatten().tolist())


def _perturbed(dims, scale=0.02, seed=1):
    torch.manual_seed(seed)
    net = SqueezeIHF(dims=dims)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net


@pytest.mark.parametrize("dims", [2, 3])
def test_the_flow_starts_as_the_identity(dims):
    net = SqueezeIHF(dims=dims)
    x = _rand(2, 1, *[16] * dims)
    code = net.style_code(_rand(1, 1, *[16] * dims, seed=1))
    assert torch.equal(net(x, code), x)
    h = _rand(3, 5, *[6] * dims, seed=2) * 4 + 1
    aan = AAN(5, 8)
    normed = F.instance_norm(h, eps=1e-5)
    torch.testing.assert_close(aan(h, torch.randn(3, 8)), normed, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_inverse_of_forward_is_exact_on_random_inputs(dims):
    net = _perturbed(dims)
    for seed in range(3):
        x = torch.randn(2, 1, *[16] * dims, generator=torch.Generator().manual_seed(seed))
        code = net.style_code(_rand(1, 1, *[16] * dims, seed=10 + seed))
        with torch.no_grad():
            y = net(x, code)
            back = net.inverse(y, code)
        assert (y - x).abs().max() > 0.05  # the flow does change the image
        assert float((back - x).norm() / x.norm()) < 1e-5


def test_different_style_codes_give_different_outputs_and_each_inverts():
    net = _perturbed(2, scale=0.05)
    x = _rand(1, 1, 16, 16)
    a, b = net.style_code(_rand(1, 1, 16, 16, seed=3)), net.style_code(_rand(1, 1, 16, 16, seed=4) * 3)
    with torch.no_grad():
        ya, yb = net(x, a), net(x, b)
        assert (ya - yb).abs().max() > 1e-3
        assert float((net.inverse(yb, b) - x).norm() / x.norm()) < 1e-5


def test_self_similarity_ignores_a_per_channel_rescaling_but_not_a_shuffle():
    f = _rand(1, 8, 6, 6)
    idx = torch.arange(36)
    assert self_similarity_loss(f * 3.0, f, idx) < 1e-6
    shuffled = f.flatten(2)[..., torch.randperm(36, generator=torch.Generator().manual_seed(0))].view_as(f)
    assert self_similarity_loss(shuffled, f, idx) > 1e-2


def _torchvision_vgg19_state(seed=0) -> dict:
    """A state dict laid out as torchvision's ``vgg19().state_dict()``: numbered ``features``
    convolutions and a classifier, random weights."""
    g = torch.Generator().manual_seed(seed)
    state, i, cin = {}, 0, 3
    for v in VGG19:
        if v == "M":
            i += 1
            continue
        state[f"features.{i}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.randn(v, generator=g) * 0.01
        cin, i = v, i + 2
    state["classifier.0.weight"] = torch.zeros(4, 4)
    return state


def test_vgg_weights_load_from_a_torchvision_style_file(tmp_path):
    state = _torchvision_vgg19_state()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    net = load_vgg_weights(path)
    x = _rand(2, 1, 24, 24)
    feats = net(x)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    assert [f.shape[-1] for f in feats] == [24, 12, 6, 3]
    # relu1_1 by hand: the grey image as RGB, ImageNet-normalized, then conv 0 and ReLU
    rgb = (x.expand(-1, 3, -1, -1) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    by_hand = F.relu(F.conv2d(rgb, state["features.0.weight"], state["features.0.bias"], padding=1))
    torch.testing.assert_close(feats[0], by_hand)
    # the features' own state dict (torchvision's vgg19().features) loads too
    torch.save(
        {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")},
        tmp_path / "features.pth",
    )
    torch.testing.assert_close(load_vgg_weights(tmp_path / "features.pth")(x)[2], feats[2])


def test_vgg_weights_of_another_network_are_refused(tmp_path):
    state = _torchvision_vgg19_state()
    state["features.5.weight"] = state["features.5.weight"][:, :32]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(InputError, match=r"features\.5\.weight"):
        load_vgg_weights(tmp_path / "bad.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "short.pth")
    with pytest.raises(InputError, match="has no weights for the VGG-19 layer 'features.0.bias'"):
        load_vgg_weights(tmp_path / "short.pth")
    (tmp_path / "text.pth").write_text("not a state dict")
    with pytest.raises(InputError, match="could not be read"):
        load_vgg_weights(tmp_path / "text.pth")


def test_vgg_features_are_fixed_size_agnostic():
    net = VGGFeatures()
    assert len(net(_rand(1, 1, 20, 28))) == 4
    assert np.isclose(net.mean.sum().item(), 0.485 + 0.456 + 0.406)
