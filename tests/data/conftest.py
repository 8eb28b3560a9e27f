"""Fixtures of the data tests (the cache and data dir are isolated by tests/conftest.py)."""

import pytest

from tests.data import fakefiles


@pytest.fixture
def tree(tmp_path):
    """A tiny ImageNet-style folder tree: train/<wnid>/ and val/<wnid>/ with a few JPEGs each."""
    return fakefiles.write_imagenet_tree(tmp_path / "imagenet", n_train=6, n_val=2)
