import numpy as np
import pytest

from mrharmony.data import load_dataset
from mrharmony.dmri.patches import PatchSampler, split_by_patch, split_by_subject
from mrharmony.errors import InputError


def _affine(voxel, corner):
    a = np.diag([voxel, voxel, voxel, 1.0])
    a[:3, 3] = np.asarray(corner, float) + voxel / 2
    return a


def _field(affine, shape):
    """A pattern planted in physical space: three channels, linear in x, y, z (mm)."""
    idx = np.indices(shape).reshape(3, -1)
    xyz = (affine[:3, :3] @ idx + affine[:3, 3:4]).T
    vals = np.stack([xyz[:, 0] + 2 * xyz[:, 1], xyz[:, 2] - xyz[:, 0], 0.5 * xyz[:, 1] + 3.0], axis=1)
    return vals.reshape(*shape, 3).astype(np.float32)


@pytest.mark.parametrize("shift_vox", [(0, 0, 0), (2, -3, 1)])
def test_target_patches_cover_the_same_physical_region(shift_vox):
    """Input 2.4 mm, target 1.2 mm on a grid with another origin: block means of the target patch
    equal the input patch for a pattern linear in physical coordinates, and every voxel centre of
    the target patch lies inside the input patch's region."""
    corner = np.array([-13.0, 7.0, 21.0])
    in_aff = _affine(2.4, corner)
    in_shape = (9, 8, 7)
    t_corner = corner + 1.2 * np.asarray(shift_vox)
    t_aff = _affine(1.2, t_corner)
    t_shape = (18 - shift_vox[0], 16 - shift_vox[1], 14 - shift_vox[2])
    x = _field(in_aff, in_shape)
    y = _field(t_aff, t_shape)
    mask = np.zeros(in_shape, bool)
    mask[3:6, 3:6, 2:5] = True
    size = 3
    s = PatchSampler([x], [in_aff], [mask], {"fine": [y], "same": [x]}, {"fine": [t_aff], "same": [in_aff]}, size=size)
    assert len(s) == mask.sum()
    assert s.target_shape("fine") == (3, 6, 6, 6) and s.target_shape("same") == (3, 3, 3, 3)
    for n in range(len(s)):
        xp, ys = s[n]
        fine = ys["fine"]
        blocks = fine.reshape(3, 3, 2, 3, 2, 3, 2).mean(axis=(2, 4, 6))
        np.testing.assert_allclose(blocks, xp, atol=1e-4)
        np.testing.assert_array_equal(ys["same"], xp)
        # physical check on voxel centres
        _, i, j, k = s.centres[n]
        lo = in_aff @ [i - 1.5, j - 1.5, k - 1.5, 1]
        hi = in_aff @ [i + 1.5, j + 1.5, k + 1.5, 1]
        # recover the target voxel centres from the pattern (x + 2y, z - x, 0.5y + 3 are invertible)
        c0, c1, c2 = fine
        py = (c2 - 3.0) / 0.5
        px = c0 - 2 * py
        pz = c1 + px
        for p, a, b in ((px, lo[0], hi[0]), (py, lo[1], hi[1]), (pz, lo[2], hi[2])):
            assert p.min() > a and p.max() < b


def test_patches_near_the_edge_are_zero_padded():
    aff = _affine(2.4, (0, 0, 0))
    x = np.ones((4, 4, 4, 2), np.float32)
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = True
    s = PatchSampler(
        [x], [aff], [mask], {"t": [np.ones((8, 8, 8, 2), np.float32)]}, {"t": [_affine(1.2, (0, 0, 0))]}, size=5
    )
    xp, ys = s[0]
    assert xp[:, :2].sum() == 0 and xp[:, 2:, 2:, 2:].min() == 1
    assert ys["t"][:, :4].sum() == 0 and ys["t"][:, 4:, 4:, 4:].min() == 1


def test_centred_target_crop():
    aff = _affine(2.4, (0, 0, 0))
    t_aff = _affine(1.2, (0, 0, 0))
    x = _field(aff, (7, 7, 7))
    y = _field(t_aff, (14, 14, 14))
    mask = np.zeros((7, 7, 7), bool)
    mask[3, 3, 3] = True
    full = PatchSampler([x], [aff], [mask], {"t": [y]}, {"t": [t_aff]}, size=5)
    crop = PatchSampler([x], [aff], [mask], {"t": [y]}, {"t": [t_aff]}, size=5, target_sizes={"t": 6})
    np.testing.assert_array_equal(crop[0][1]["t"], full[0][1]["t"][:, 2:8, 2:8, 2:8])
    with pytest.raises(InputError, match="differ from it by an even number"):
        PatchSampler([x], [aff], [mask], {"t": [y]}, {"t": [t_aff]}, size=5, target_sizes={"t": 7})


def test_half_voxel_shift_is_refused():
    aff = _affine(2.4, (0, 0, 0))
    x = np.zeros((4, 4, 4, 1), np.float32)
    with pytest.raises(InputError, match="fraction of a voxel"):
        PatchSampler(
            [x],
            [aff],
            [np.ones((4, 4, 4), bool)],
            {"t": [np.zeros((8, 8, 8, 1))]},
            {"t": [_affine(1.2, (0.6, 0, 0))]},
            size=3,
        )


def test_batch_equals_single_samples(tiny_prepared):
    ds = load_dataset(tiny_prepared, check_data=False)
    s = PatchSampler.from_dataset(ds, size=11)
    assert s.target_shape("connectom_sa") == (28, 22, 22, 22)
    idx = np.random.default_rng(0).choice(len(s), 7, replace=False)
    xb, yb = s.batch(idx)
    assert xb.shape == (7, 28, 11, 11, 11) and xb.dtype == np.float32
    for b, n in enumerate(idx):
        x, ys = s[n]
        np.testing.assert_array_equal(xb[b], x)
        for t in s.target_names:
            np.testing.assert_array_equal(yb[t][b], ys[t])
    targets_only = s.target_batch(idx)  # what scoring cuts: the same target patches, no inputs
    assert sorted(targets_only) == sorted(s.target_names)
    for t in s.target_names:
        np.testing.assert_array_equal(targets_only[t], yb[t])
    # the centre voxel of an input patch is the normalized feature of its centre voxel
    from mrharmony.dmri.features.prepare import load_features

    f = load_features(ds, "sub-01", "ge_st")
    n = int(np.flatnonzero(s.centres[:, 0] == 0)[5])
    _, i, j, k = s.centres[n]
    np.testing.assert_array_equal(s[n][0][:, 5, 5, 5], f.data[i, j, k])
    # volumes are held once: memory is that of the volumes, not of the patches
    held = sum(v.nbytes for v in s._inputs) + sum(v.nbytes for vs in s._targets.values() for v in vs)
    assert held < len(s) * 28 * 11**3 * 4 / 4


def test_splits_are_seeded_disjoint_and_complete(tiny_prepared):
    ds = load_dataset(tiny_prepared, check_data=False)
    s = PatchSampler.from_dataset(ds, targets=["prisma_st"], size=5)
    tr, te = split_by_patch(len(s), test_fraction=0.1, seed=3)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(s)
    assert abs(len(te) / len(s) - 0.1) < 0.01
    tr2, te2 = split_by_patch(len(s), test_fraction=0.1, seed=3)
    np.testing.assert_array_equal(te, te2)
    assert not np.array_equal(te, split_by_patch(len(s), test_fraction=0.1, seed=4)[1])
    tr, te = split_by_subject(s, test_subjects=["sub-02"])
    subj = s.subject_index()
    assert set(subj[te]) == {1} and 1 not in set(subj[tr]) and len(tr) + len(te) == len(s)
    tr, te = split_by_subject(s, n_test=1, seed=0)
    assert len(set(s.subject_index()[te])) == 1
    with pytest.raises(InputError, match="is not among the dataset.s subjects"):
        split_by_subject(s, test_subjects=["sub-99"])


def test_validation_by_subject_holds_a_training_subject_out_of_training(tiny_prepared):
    """validation: subject gives every patch of one training subject to validation and none to
    training (validation patches then share no target noise with training patches); the test
    split is the same as with the paper's validation by patch."""
    from mrharmony.data import load_dataset
    from mrharmony.dmri.config import DataConfig, comparable_data, make_splits
    from mrharmony.dmri.patches import PatchSampler

    ds = load_dataset(tiny_prepared, check_data=False)
    sampler = PatchSampler.from_dataset(ds, targets=["prisma_st"])
    base = {"dataset": str(tiny_prepared), "split": "subject", "test_subjects": ["sub-03"]}
    by_patch = make_splits(sampler, DataConfig(**base))
    by_subject = make_splits(sampler, DataConfig(**base, validation="subject"))
    np.testing.assert_array_equal(by_patch.test, by_subject.test)
    subj = sampler.subject_index()
    val_subjects = set(subj[by_subject.validation].tolist())
    assert len(val_subjects) == 1 and not val_subjects & set(subj[by_subject.train].tolist())
    assert sampler.subjects.index("sub-03") not in val_subjects
    assert len(by_subject.train) + len(by_subject.validation) == len(by_patch.train) + len(by_patch.validation)
    assert len(set(subj[by_patch.validation].tolist())) == 2  # by patch: drawn from both training subjects
    # a run recorded before the setting existed compares equal to one with its default
    old = {
        k: v
        for k, v in DataConfig(**base).model_dump(mode="json").items()
        if k not in ("validation", "n_validation_subjects")
    }
    assert comparable_data(old) == comparable_data(DataConfig(**base).model_dump(mode="json"))
