"""Nonlinear registration (dipy's SyN after an affine pre-alignment) and group templates, on small
synthetic volumes under known smooth warps."""

import numpy as np
import pytest
from scipy import ndimage

from mrharmony.registration import Warp, register, register_syn, resample, syn_plan
from mrharmony.template import build_template

SHAPE = (32, 32, 24)
AFFINE = np.diag([2.4, 2.4, 2.4, 1.0])
AFFINE[:3, 3] = -1.2 * np.array(SHAPE)


def _image(seed=0):
    """Smooth blobs of different heights: structure at several scales for the registration."""
    rng = np.random.default_rng(seed)
    img = np.zeros(SHAPE, np.float32)
    for _ in range(40):
        img[tuple(rng.integers(4, s - 4) for s in SHAPE)] = rng.uniform(1, 3)
    img = ndimage.gaussian_filter(img, 2.0)
    return img / img.max()


def _displacement(seed, amplitude_mm=3.0):
    """A smooth displacement field (mm, 3 x SHAPE) with no net translation."""
    rng = np.random.default_rng(seed)
    d = np.stack([ndimage.gaussian_filter(rng.standard_normal(SHAPE), 4.0, mode="nearest") for _ in range(3)])
    d -= d.mean(axis=(1, 2, 3), keepdims=True)
    return d * (amplitude_mm / d.std())


def _warped(img, d):
    """``img`` under the displacement ``d``: the result at voxel x is ``img`` at x + d(x)."""
    vox = np.indices(SHAPE, dtype=np.float64) + d / 2.4
    return ndimage.map_coordinates(img, vox, order=1, mode="constant").astype(np.float32)


def _rms(a, b):
    return float(np.sqrt(((a - b) ** 2).mean()))


def test_syn_recovers_a_known_smooth_warp_better_than_affine_registration():
    static = _image()
    moving = _warped(static, _displacement(1))
    linear = register(static, AFFINE, moving, AFFINE, kind="affine")
    warp = register_syn(static, AFFINE, moving, AFFINE, prealign=linear)
    assert not warp.linear
    np.testing.assert_array_equal(warp.matrix, linear)
    before = _rms(moving, static)
    affine_back = _rms(resample(moving, AFFINE, SHAPE, AFFINE, linear), static)
    syn_back = _rms(warp.to_static(moving, AFFINE, SHAPE, AFFINE), static)
    assert syn_back < 0.7 * affine_back < 0.7 * before, (before, affine_back, syn_back)
    # and the other way: the static image brought onto the moving one
    assert _rms(warp.to_moving(static, AFFINE, SHAPE, AFFINE), moving) < 0.7 * before
    # the values of dipy's own warping of the images (away from the volume's edge, which
    # registration.resample's rule treats)
    inner = (slice(3, -3),) * 3
    np.testing.assert_allclose(
        warp.to_static(moving, AFFINE, SHAPE, AFFINE)[inner], warp.diffeo.transform(moving)[inner], atol=1e-5
    )
    np.testing.assert_allclose(
        warp.to_moving(static, AFFINE, SHAPE, AFFINE)[inner], warp.diffeo.transform_inverse(static)[inner], atol=1e-5
    )
    # 4D data are warped channel by channel, linearly: a channel scaled by 2 comes out scaled by 2
    both = warp.to_static(np.stack([moving, 2 * moving], -1), AFFINE, SHAPE, AFFINE)
    assert both.shape == (*SHAPE, 2) and both.dtype == np.float32
    np.testing.assert_allclose(both[..., 1], 2 * both[..., 0], rtol=1e-5, atol=1e-6)
    # any grid of the moving space will do: data on a grid twice as coarse land in the same place
    coarse = AFFINE @ np.diag([2.0, 2.0, 2.0, 1.0])
    coarse_data = resample(moving, AFFINE, tuple(s // 2 for s in SHAPE), coarse)
    assert _rms(warp.to_static(coarse_data, coarse, SHAPE, AFFINE), static) < affine_back


def test_a_linear_warp_is_resampling_with_its_matrix():
    img = _image(3)
    m = np.eye(4)
    m[:3, 3] = [2.0, -1.0, 0.5]
    w = Warp(m)
    assert w.linear
    np.testing.assert_array_equal(w.to_static(img, AFFINE, SHAPE, AFFINE), resample(img, AFFINE, SHAPE, AFFINE, m))
    np.testing.assert_allclose(w.points(np.zeros((1, 3))), [[2.0, -1.0, 0.5]])


def test_syn_fits_its_pyramid_and_window_to_small_volumes():
    assert syn_plan((64, 64, 64), (10, 5), 2) == ((10, 5), 2)
    assert syn_plan((12, 12, 8), (10, 5), 2) == ((10, 5), 1)  # the coarse level is 6 x 6 x 4 voxels
    assert syn_plan((12, 12, 4), (10, 5), 2) == ((5,), 1)
    with pytest.raises(ValueError, match="too small"):
        syn_plan((12, 12, 3), (10, 5), 2)


@pytest.fixture(scope="module")
def copies():
    """Four copies of one image under smooth warps that cancel on average (d, -d, e, -e)."""
    img = _image(0)
    out = []
    for seed in (1, 2):
        d = _displacement(seed)
        out += [_warped(img, d), _warped(img, -d)]
    return img, out


def test_the_template_of_warped_copies_is_closer_to_the_original_than_their_average(copies):
    img, images = copies
    masks = [im > 0.05 for im in images]
    calls = []

    class Count:
        def update(self, n=1):
            calls.append(n)

    # the copies share their world frame: no linear pre-alignment (tested above), the template's
    # own iteration alone
    t = build_template(images, [AFFINE] * 4, masks=masks, rounds=2, prealign="none", progress=Count())
    assert t.image.shape == SHAPE and t.image.dtype == np.float32 and len(t.warps) == 4
    np.testing.assert_array_equal(t.affine, AFFINE)  # the first image's grid
    assert sum(calls) == 4 * (1 + 2)
    plain = _rms(np.mean(images, 0), img)
    assert _rms(t.image, img) < 0.9 * plain, (_rms(t.image, img), plain)
    # the shape update moves it towards the average anatomy: without it, the template keeps more
    # of the first copy's shape
    fixed = build_template(images, [AFFINE] * 4, rounds=2, prealign="none", shape_step=0.0)
    assert _rms(t.image, img) < 0.95 * _rms(fixed.image, img), (_rms(t.image, img), _rms(fixed.image, img))
    # each map brings its image into the template: closer to it than the image itself
    for i, im in enumerate(images):
        assert _rms(t.to_template(i, im, AFFINE), t.image) < 0.7 * _rms(im, t.image)
    # the template's mask: where most of the copies' masks land
    brought = np.mean([t.to_template(i, m.astype(np.float32), AFFINE) for i, m in enumerate(masks)], 0)
    np.testing.assert_array_equal(t.mask, brought >= 0.5)
    # and template data go back onto an image's grid
    assert _rms(t.from_template(0, t.image, SHAPE, AFFINE), images[0]) < 0.7 * _rms(t.image, images[0])


def test_the_template_is_deterministic(copies):
    _, images = copies
    a, b = (build_template(images[:2], [AFFINE] * 2, rounds=2, prealign="affine") for _ in range(2))
    assert not any(w.linear for w in a.warps)
    np.testing.assert_array_equal(a.image, b.image)
    for wa, wb in zip(a.warps, b.warps):
        np.testing.assert_array_equal(wa.matrix, wb.matrix)
        np.testing.assert_array_equal(wa.diffeo.forward, wb.diffeo.forward)
        np.testing.assert_array_equal(wa.diffeo.backward, wb.diffeo.backward)


def test_a_template_without_rounds_is_the_linearly_aligned_mean(copies):
    _, images = copies
    t = build_template(images, [AFFINE] * 4, rounds=0, prealign="none")
    np.testing.assert_allclose(t.image, np.mean(images, 0), atol=1e-6)
    assert t.mask is None and all(w.linear for w in t.warps)
    with pytest.raises(ValueError, match="one affine"):
        build_template(images, [AFFINE] * 3)
