"""Long-tailed subsampling (Cao et al.) and the shot / index-range groups."""

from __future__ import annotations

import math

import pytest
import torch

from protobench.core.errors import UserError
from protobench.data import ImageSplit
from protobench.data.longtail import (
    group_accuracy,
    index_range_groups,
    long_tail_counts,
    long_tail_subsample,
    shot_groups,
)


@pytest.mark.parametrize(
    ("n_max", "k", "totals"),
    [(5000, 10, [11_203, 12_406, 13_996, 20_431]), (500, 100, [9_502, 10_847, 12_608, 19_573])],
)
def test_published_train_sizes(n_max, k, totals):
    assert [sum(long_tail_counts(n_max, k, r)) for r in (200, 100, 50, 10)] == totals


def test_exp_profile_shape():
    counts = long_tail_counts(5000, 10, 100)
    assert counts[0] == 5000 and counts[-1] == 50
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))


def test_step_profile():
    assert long_tail_counts(500, 10, 10, "step") == [500] * 5 + [50] * 5
    assert long_tail_counts(100, 5, 4, "step") == [100, 100, 25, 25, 25]


def test_bad_arguments():
    with pytest.raises(UserError, match="profile"):
        long_tail_counts(100, 10, 10, "linear")
    with pytest.raises(UserError, match="ratio"):
        long_tail_counts(100, 10, 0.01)


def _balanced(n_per_class, k):
    """A split whose images encode their own position (high byte, low byte) so order can be checked."""
    labels = torch.arange(k).repeat(n_per_class)
    pos = torch.arange(labels.numel())
    images = torch.stack([pos // 256, pos % 256], dim=1).to(torch.uint8).view(-1, 2, 1, 1)
    return ImageSplit(images, labels)


def _positions(split):
    return (split.images[:, 0, 0, 0].long() * 256 + split.images[:, 1, 0, 0].long()).tolist()


def test_subsample_counts_order_and_seed():
    split = _balanced(50, 10)
    lt = long_tail_subsample(split, 10, 10, "exp", seed=3)
    assert lt.class_counts(10).tolist() == long_tail_counts(50, 10, 10)
    positions = _positions(lt)
    assert positions == sorted(positions)  # original order kept
    assert lt.labels.tolist() == [int(split.labels[p]) for p in positions]
    again = long_tail_subsample(split, 10, 10, "exp", seed=3)
    other = long_tail_subsample(split, 10, 10, "exp", seed=4)
    assert _positions(again) == positions and _positions(other) != positions


def test_subsample_needs_enough_images():
    with pytest.raises(UserError, match="needs 60"):
        long_tail_subsample(_balanced(50, 4), 4, 2, "exp", seed=0, n_max=60)


def test_shot_groups_boundaries():
    groups = shot_groups([500, 101, 100, 20, 19, 1])
    assert groups == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}


def test_index_range_groups_match_authors():
    g100 = index_range_groups(100)
    assert (g100["many"][-1], g100["medium"][0], g100["medium"][-1], g100["few"][0]) == (35, 36, 70, 71)
    assert index_range_groups(10) == {"many": [0, 1, 2], "medium": [3, 4, 5, 6], "few": [7, 8, 9]}
    g1000 = index_range_groups(1000)
    assert (len(g1000["many"]), len(g1000["medium"]), len(g1000["few"])) == (360, 350, 290)


def test_group_accuracy():
    acc = group_accuracy([1.0, 0.5, 0.0, 0.25], {"a": [0, 1], "b": [2, 3], "c": []})
    assert acc["a"] == 0.75 and acc["b"] == 0.125 and math.isnan(acc["c"])
