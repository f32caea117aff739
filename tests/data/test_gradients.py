"""FSL gradient tables: the one writer and the reader agree, byte for byte."""

import numpy as np
import pytest

from mrharmony.data.gradients import read_gradients, write_gradients
from tests.helpers import directions


def test_written_tables_read_back(tmp_path):
    bvals = np.r_[0.0, 5.0, np.full(6, 1200.0), np.full(6, 3000.0)]
    bvecs = np.r_[np.zeros((2, 3)), directions(6, 1), directions(6, 2)]
    write_gradients(tmp_path / "dwi.bval", tmp_path / "dwi.bvec", bvals, bvecs)
    got_b, got_v = read_gradients(tmp_path / "dwi.bval", tmp_path / "dwi.bvec", n_volumes=len(bvals))
    np.testing.assert_array_equal(got_b, bvals)
    np.testing.assert_allclose(got_v, bvecs, atol=1e-6)


def test_the_format(tmp_path):
    """One row of %g b-values; three rows (x, y, z) of six decimals; a newline at the end."""
    write_gradients(
        tmp_path / "a.bval",
        tmp_path / "a.bvec",
        np.array([0.0, 1000.0, 2500.5]),
        np.array([[0, 0, 0], [1, 0, 0], [0, -0.6, 0.8]]),
    )
    assert (tmp_path / "a.bval").read_text() == "0 1000 2500.5\n"
    assert (tmp_path / "a.bvec").read_text() == (
        "0.000000 1.000000 0.000000\n0.000000 0.000000 -0.600000\n0.000000 0.000000 0.800000\n"
    )


def test_a_table_of_the_wrong_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match="one direction per b-value"):
        write_gradients(tmp_path / "a.bval", tmp_path / "a.bvec", [0.0, 1000.0], np.zeros((3, 2)))
    assert not (tmp_path / "a.bval").exists()


def test_b0_directions_may_be_nan_and_either_orientation_is_read(tmp_path):
    """Some converters write NaN (or anything) as the direction of a b=0 volume: it carries no
    information, is accepted and becomes zero; a NaN on a diffusion-weighted volume is refused
    with its volume number. Three columns read like three rows, as dipy reads them."""
    import numpy as np
    import pytest

    from mrharmony.data.gradients import read_gradients
    from mrharmony.errors import InputError

    bval, bvec = tmp_path / "dwi.bval", tmp_path / "dwi.bvec"
    bval.write_text("0 1000 1000 5\n")
    bvec.write_text("nan 1 0 nan\nnan 0 1 nan\nnan 0 0 nan\n")
    bvals, bvecs = read_gradients(bval, bvec, n_volumes=4)
    np.testing.assert_array_equal(bvecs, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    bvec.write_text("nan nan nan\n1 0 0\n0 1 0\n0 0 0\n")  # N x 3
    np.testing.assert_array_equal(read_gradients(bval, bvec)[1], bvecs)
    bvec.write_text("0 1 nan 0\n0 0 0 0\n0 0 1 0\n")
    with pytest.raises(
        InputError,
        match=r"dwi.bvec: holds NaN or infinite components in the direction of volume 2, "
        r"which is diffusion-weighted \(b=1000\)",
    ):
        read_gradients(bval, bvec)
