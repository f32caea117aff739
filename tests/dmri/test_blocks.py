import pytest
import torch

from mrharmony.dmri.networks.blocks import ReversibleSequence, center_crop, shuffle3d


def test_shuffle3d_places_channel_groups_as_sub_voxels():
    r, c = 2, 3
    x = torch.arange(1 * c * r**3 * 2 * 2 * 2, dtype=torch.float32).reshape(1, c * r**3, 2, 2, 2)
    y = shuffle3d(x, r)
    assert y.shape == (1, c, 4, 4, 4)
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                for k in range(r):
                    g = ch * r**3 + i * r * r + j * r + k
                    torch.testing.assert_close(y[0, ch, i::r, j::r, k::r], x[0, g])
    assert shuffle3d(x, 1) is x


def test_center_crop():
    x = torch.arange(6**3).reshape(1, 1, 6, 6, 6)
    assert center_crop(x, 2)[0, 0, 0, 0, 0] == x[0, 0, 2, 2, 2]
    with pytest.raises(ValueError):
        center_crop(x, 3)


@pytest.mark.parametrize("kernel", [1, 3])
def test_reversible_blocks_invert_exactly_and_save_memory_without_changing_gradients(kernel):
    torch.manual_seed(0)
    saving = ReversibleSequence(8, 3, kernel=kernel, memory_saving=True).double()
    plain = ReversibleSequence(8, 3, kernel=kernel, memory_saving=False).double()
    plain.load_state_dict(saving.state_dict())
    x = torch.randn(2, 8, 5, 5, 5, dtype=torch.double, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y = saving(x)
    torch.testing.assert_close(y, plain(x2))
    (y**2).sum().backward()
    (plain(x2) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    for p, q in zip(saving.parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    z = x.detach()
    for blk in saving.blocks:
        torch.testing.assert_close(blk.inverse(blk(z)), z)
    # the memory-saving path keeps only the output for backward, not the blocks' activations
    assert y.grad_fn.__class__.__name__.startswith("_ReversibleFunction")
