"""Diagnostics after the last epoch: the streamed measures equal their direct formulas on known features."""

import contextlib
import math

import numpy as np
import pytest
import torch
from torch import nn

from protobench.engine.diagnostics import EMBEDDING_SAMPLE, feature_report
from protobench.heads import create_method


class Passthrough(nn.Module):
    """A 'backbone' that returns its input (it has one parameter so the device can be read)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def batches(features: torch.Tensor, labels: torch.Tensor, size: int = 64):
    return [(features[i : i + size], labels[i : i + size]) for i in range(0, len(labels), size)]


def report(method, features, labels):
    return feature_report(Passthrough(), method, batches(features, labels), method.num_classes, contextlib.nullcontext)


def direct_nc1(h: np.ndarray, y: np.ndarray) -> float:
    classes = np.unique(y)
    means = np.stack([h[y == c].mean(axis=0) for c in classes])
    within = sum((h[y == c] - means[i]).T @ (h[y == c] - means[i]) for i, c in enumerate(classes)) / len(y)
    centred = means - means.mean(axis=0)
    between = centred.T @ centred / len(classes)
    return float(np.trace(within @ np.linalg.pinv(between)) / len(classes))


def test_streamed_nc1_and_class_mean_cosines_equal_the_direct_formulas():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 5
    centres = torch.randn(5, 8, generator=generator) * 3
    features = centres[labels] + torch.randn(300, 8, generator=generator)
    method = create_method("softmax", 5, 8, seed=0)
    values = report(method, features, labels).values
    h, y = features.double().numpy(), labels.numpy()
    assert values["nc1"] == pytest.approx(direct_nc1(h, y), rel=1e-6)
    means = np.stack([h[y == c].mean(axis=0) for c in range(5)])
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    pairs = (unit @ unit.T)[np.triu_indices(5, 1)]
    assert values["class_mean_cosine_mean"] == pytest.approx(pairs.mean(), rel=1e-6)
    assert values["class_mean_cosine_std"] == pytest.approx(pairs.std(ddof=1), rel=1e-6)
    rows = method.classifier.weight.detach().double().numpy()
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    assert values["class_mean_anchor_cosine"] == pytest.approx(float((unit * rows).sum(axis=1).mean()), rel=1e-6)


def test_features_on_their_prototypes_are_collapsed_and_aligned():
    method = create_method("hpn", 4, 3, seed=0)
    labels = torch.arange(400) % 4
    features = method.class_anchors()[labels] * 2.0  # every feature on its class's prototype direction
    values = report(method, features, labels).values
    assert values["nc1"] == pytest.approx(0.0, abs=1e-9)
    assert values["class_mean_anchor_cosine"] == pytest.approx(1.0, abs=1e-6)
    # HPN's 4 prototypes in 3-d are a regular tetrahedron: every angle arccos(-1/3) = 109.47 degrees.
    assert values["anchor_min_angle_degrees"] == pytest.approx(math.degrees(math.acos(-1 / 3)), abs=0.5)


def test_expected_calibration_error_of_known_confidences():
    # softmax scores with logits (a, 0): confidence sigmoid(a); half the rows right, half wrong.
    method = create_method("softmax", 2, 2, seed=0)
    with torch.no_grad():
        method.classifier.weight.copy_(torch.eye(2))
        method.classifier.bias.zero_()
    a = math.log(0.9 / 0.1)  # confidence 0.9 for class 0
    features = torch.tensor([[a, 0.0]] * 100)
    labels = torch.tensor([0] * 70 + [1] * 30)  # 70% right at confidence 0.9: ECE = |0.7 - 0.9| = 0.2
    assert report(method, features, labels).values["ece"] == pytest.approx(0.2, abs=1e-6)


def test_an_embedding_sample_only_at_small_dimensions():
    labels = torch.arange(2500) % 10
    small = report(create_method("dl2pa", 10, 3, seed=0), torch.randn(2500, 3), labels).embeddings
    assert small["features"].shape == (EMBEDDING_SAMPLE, 3) and small["labels"].shape == (EMBEDDING_SAMPLE,)
    assert small["anchors"].shape == (10, 3)
    assert (small["labels"] == labels[:EMBEDDING_SAMPLE].numpy()).all()
    assert report(create_method("dl2pa", 10, 8, seed=0), torch.randn(2500, 8), labels).embeddings is None


def test_expected_calibration_error_uses_15_equal_bins():
    # Confidences 0.62 (all right) and 0.65 (all wrong) share the bin [0.600, 0.667) of 15 equal bins, so
    # ECE = |0.5 - 0.635| = 0.135; with 14 bins they would fall apart and ECE would be 0.515.
    method = create_method("softmax", 2, 2, seed=0)
    with torch.no_grad():
        method.classifier.weight.copy_(torch.eye(2))
        method.classifier.bias.zero_()
    logits = [math.log(c / (1 - c)) for c in (0.62, 0.65)]
    features = torch.tensor([[logits[0], 0.0]] * 50 + [[logits[1], 0.0]] * 50)
    labels = torch.tensor([0] * 50 + [1] * 50)
    assert report(method, features, labels).values["ece"] == pytest.approx(0.135, abs=1e-6)
    # A confidence in every bin: each of the 15 bins holds one correct and one wrong prediction.
    centres = [(k + 0.5) / 15 for k in range(8, 15)]  # confidence >= 0.5 with two classes: bins 7.5/15 up
    features = torch.tensor([[math.log(c / (1 - c)), 0.0] for c in centres for _ in range(2)])
    labels = torch.tensor([0, 1] * len(centres))
    expected = sum(abs(0.5 - c) for c in centres) / len(centres)
    assert report(method, features, labels).values["ece"] == pytest.approx(expected, abs=1e-6)
