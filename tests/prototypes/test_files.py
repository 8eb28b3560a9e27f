"""A prototype set read from a .npy file: unit rows come back renormalised, anything else is a one-line UserError."""

from __future__ import annotations

import numpy as np
import pytest

from protobench.core.errors import UserError
from protobench.prototypes.files import load_prototype_file


def test_unit_rows_load_as_float64(tmp_path):
    path = tmp_path / "p.npy"
    P = np.eye(4, 3, dtype=np.float32)[[0, 1, 2, 0]] * np.float32(1 + 1e-4)
    np.save(path, P)
    loaded = load_prototype_file(path)
    assert loaded.dtype == np.float64 and loaded.shape == (4, 3)
    assert np.allclose(np.linalg.norm(loaded, axis=1), 1)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.ones((4, 3)), "unit vectors"),
        (np.ones(5) / np.sqrt(5), "K x d"),
        (np.eye(3, dtype=np.int64), "floats"),
        (np.full((3, 3), np.nan), "NaN or infinite"),
    ],
)
def test_non_prototype_arrays_are_refused(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(UserError, match=message) as caught:
        load_prototype_file(path)
    assert "\n" not in str(caught.value)


def test_missing_and_non_numpy_files_are_refused(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_prototype_file(tmp_path / "none.npy")
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(UserError, match="not a .npy array"):
        load_prototype_file(tmp_path / "junk.npy")
