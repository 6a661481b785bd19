"""Transformer decision logic without servers: calibration, threshold, WHO grades, review reasons, CAM."""

from __future__ import annotations

import numpy as np
import pytest

from gliomagrade.drift import DriftMonitor
from gliomagrade.serving.bundle import ModelBundle, ServingManifest
from gliomagrade.serving.transformer import GliomaTransformer, calibrated_probabilities, class_activation_map


def _transformer(class_names: tuple[str, ...], threshold: float | None = None, **fields: object) -> GliomaTransformer:
    manifest = ServingManifest(model_name="m", version="2", class_names=class_names, threshold=threshold,
                               input_shape=(4, 8, 8, 8), **fields)
    k = len(class_names)
    model = GliomaTransformer("m", "unused")
    model.bundle = ModelBundle(root=None, manifest=manifest, onnx_path=None,  # type: ignore[arg-type]
                               head_weight=np.ones((k, 3), np.float32), head_bias=np.zeros(k, np.float32))
    model.drift = DriftMonitor({})
    return model


def test_temperature_softens_and_keeps_the_order() -> None:
    logits = np.array([0.5, 2.5])
    sharp, soft = calibrated_probabilities(logits, 1.0), calibrated_probabilities(logits, 3.0)
    assert sharp.sum() == pytest.approx(1) and soft.sum() == pytest.approx(1)
    assert 0.5 < soft[1] < sharp[1]
    assert calibrated_probabilities(np.array([1000.0, 0.0]), 1.0)[0] == pytest.approx(1.0)  # no overflow


def test_binary_threshold_decides_the_grade() -> None:
    model = _transformer(("LGG", "HGG"), threshold=0.3)
    decision = model._decide(np.array([0.65, 0.35]))
    assert decision["grade"] == "HGG" and decision["prob_high"] == pytest.approx(0.35)
    assert decision["confidence"] == pytest.approx(0.35)
    assert _transformer(("LGG", "HGG"))._decide(np.array([0.65, 0.35]))["grade"] == "LGG"


def test_who_model_reports_who_grade_and_binary_grade() -> None:
    model = _transformer(("WHO-II", "WHO-III", "WHO-IV"))
    decision = model._decide(np.array([0.2, 0.7, 0.1]))
    assert decision["who_grade"] == "WHO-III" and decision["grade"] == "LGG"
    assert decision["prob_high"] == pytest.approx(0.1)
    assert model._decide(np.array([0.1, 0.1, 0.8]))["grade"] == "HGG"


def test_review_reasons() -> None:
    model = _transformer(("LGG", "HGG"), review_confidence=0.8, qc_ranges={"brain_volume_ml": (900.0, 2000.0)})
    confident = {"confidence": 0.9}
    assert model._review_reasons(confident, {"brain_volume_ml": 1500.0, "registration_suspect": False}) == []
    reasons = model._review_reasons({"confidence": 0.6}, {"brain_volume_ml": 2500.0, "registration_suspect": True})
    assert reasons == ["low_confidence", "registration_suspect", "qc_out_of_range:brain_volume_ml"]


def test_cam_lights_up_where_the_class_evidence_is() -> None:
    features = np.zeros((3, 4, 4, 4), np.float32)
    features[0, 1, 2, 3] = 5.0  # evidence for class 1 (weight +1) at one cell
    features[1, 0, 0, 0] = 5.0  # evidence against class 1 (weight -1)
    weight = np.array([[0, 1, 0], [1, -1, 0]], np.float32)
    cam, peak = class_activation_map(features, weight, 1, (16, 16, 16))
    assert peak == pytest.approx(5.0)  # the raw map's peak: 1.0 in the map stands for it
    assert cam.shape == (16, 16, 16) and 0.5 < cam.max() <= 1.0 and cam.min() >= 0
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert [p // 4 for p in peak] == [1, 2, 3]
    assert cam[:4, :4, :4].max() == 0.0  # negative evidence is cut by the ReLU
    weak, weak_peak = class_activation_map(features / 1000, weight, 1, (16, 16, 16))
    np.testing.assert_allclose(weak, cam, atol=1e-6)  # the same shape of map ...
    assert weak_peak == pytest.approx(0.005)  # ... reported as a thousand times weaker
