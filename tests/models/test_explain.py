"""CAM behaviour: CAM == Grad-CAM for GAP heads, correct sign, and a planted lesion lights the map.

The toy task (a bright blob somewhere in noise vs noise only) doubles as the "a model learns a
separable task" check: the loss falls and the held-out AUC rises from chance to near 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from monai.visualize import GradCAM
from sklearn.metrics import roc_auc_score

from gliomagrade.errors import InputError
from gliomagrade.explain import (
    cam_from_features,
    cam_mass_inside,
    grad_cam,
    model_cam,
    normalise_cam,
    pointing_game,
    upsample_cam,
)
from gliomagrade.models import GradingNet, build_model

SIZE = 24
AMP = 4.0


def blob_volumes(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Noise; class 1 volumes carry a bright Gaussian blob at a random place, mean-matched so that
    the global intensity gives nothing away. Returns x, y and the blob masks."""
    zz, yy, xx = np.mgrid[:SIZE, :SIZE, :SIZE]
    x = rng.normal(0, 1, (n, 1, SIZE, SIZE, SIZE)).astype(np.float32)
    y = np.arange(n) % 2
    masks = np.zeros((n, SIZE, SIZE, SIZE), bool)
    for i in np.flatnonzero(y):
        c = rng.integers(5, SIZE - 5, 3)
        r2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        blob = AMP * np.exp(-r2 / (2 * 2.0**2))
        x[i, 0] += blob - blob.mean()
        masks[i] = r2 <= 9
    return torch.from_numpy(x), torch.from_numpy(y), masks


@dataclass
class Trained:
    model: GradingNet
    losses: list[float]
    auc_before: float
    auc_after: float
    x_test: torch.Tensor
    y_test: torch.Tensor
    masks_test: np.ndarray


def _auc(model: GradingNet, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[:, 1].numpy()
    return float(roc_auc_score(y.numpy(), p))


@pytest.fixture(scope="module")
def trained() -> Trained:
    """A two-stage smallcnn trained for a few seconds on blob-vs-noise volumes.

    Two stages keep the receptive field (15 voxels) smaller than the 24^3 volume, so the feature maps
    can localise at all; a deeper net on such a tiny volume sees everything from every cell.
    """
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y, _ = blob_volumes(64, rng)
    x_test, y_test, masks_test = blob_volumes(24, rng)
    model = build_model("smallcnn", 1, 2, channels=(8, 16), strides=(2, 1))
    auc_before = _auc(model, x_test, y_test)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        model.train()
        for idx in torch.randperm(len(x)).split(16):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return Trained(model.eval(), losses, auc_before, _auc(model, x_test, y_test), x_test, y_test, masks_test)


def test_model_learns_a_separable_toy_task(trained: Trained) -> None:
    assert np.mean(trained.losses[-4:]) < np.mean(trained.losses[:4]) - 0.1
    assert trained.auc_before < 0.8
    assert trained.auc_after > 0.95


def test_cam_peak_lands_on_the_planted_blob(trained: Trained) -> None:
    positives = np.flatnonzero(trained.y_test.numpy() == 1)
    cams = upsample_cam(model_cam(trained.model, trained.x_test[positives], class_index=1), (SIZE,) * 3)
    hits = [pointing_game(c, m, tolerance=2) for c, m in zip(cams, trained.masks_test[positives], strict=True)]
    assert np.mean(hits) >= 0.8
    blob_fraction = trained.masks_test[positives].mean()  # ~0.9% of the volume
    mass = [cam_mass_inside(c, m) for c, m in zip(cams, trained.masks_test[positives], strict=True)]
    assert np.nanmedian(mass) > 5 * blob_fraction
    # the other class's map must not point at the lesion: high = evidence FOR the class
    cams0 = upsample_cam(model_cam(trained.model, trained.x_test[positives], class_index=0), (SIZE,) * 3)
    inside0 = [c[m].mean() for c, m in zip(cams0, trained.masks_test[positives], strict=True)]
    inside1 = [c[m].mean() for c, m in zip(cams, trained.masks_test[positives], strict=True)]
    assert np.mean(inside1) > np.mean(inside0)


@pytest.mark.parametrize(("norm", "merge_stage", "per_sequence", "gate", "tissue"),
                         [("batch", 0, False, False, 0), ("instance", 0, False, False, 0),
                          ("batch", 1, False, False, 0), ("batch", 0, True, False, 0), ("batch", 0, False, True, 0),
                          ("batch", 1, False, True, 0), ("batch", 0, False, True, 6)])
def test_cam_equals_grad_cam_for_a_gap_head(norm: str, merge_stage: int, per_sequence: bool, gate: bool,
                                            tissue: int) -> None:
    torch.manual_seed(0)
    model = build_model("smallcnn", 2, 3, norm=norm, dropout=0.3, merge_stage=merge_stage,
                        per_sequence=per_sequence, lesion_gate=gate, tissue_width=tissue).eval()
    with torch.no_grad():  # a nonzero bias and a positive head so the maps are not all zero
        model.classifier.bias.fill_(0.7)
        model.classifier.weight.abs_()
    x = torch.randn(2, 2, 32, 32, 32)
    with torch.no_grad():
        logits, fmap = model.forward_with_features(x)
    n_vox = fmap[0, 0].numel()
    for k in range(3):
        cam = cam_from_features(fmap, model.classifier.weight, k)
        gcam = grad_cam(model, x, k)
        assert cam.shape == gcam.shape == (2, *fmap.shape[2:])
        assert cam.max() > 0
        np.testing.assert_allclose(gcam, cam / n_vox, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(normalise_cam(gcam), normalise_cam(cam), atol=1e-5)
        # with the bias and where the ReLU clips nothing, the map's voxel mean is exactly the logit
        with_bias = cam_from_features(fmap, model.classifier.weight, k, bias=model.classifier.bias)
        unclipped = (with_bias > 0).reshape(2, -1).all(1)
        assert unclipped.any()
        np.testing.assert_allclose(with_bias.reshape(2, -1).mean(1)[unclipped], logits[unclipped, k], rtol=1e-4)
    assert all(p.grad is None for p in model.parameters()), "grad_cam must not leave gradients behind"
    assert not model._forward_hooks and not model.features._forward_hooks


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # MONAI's hooks on an input without grad
def test_grad_cam_matches_monai_and_monai_default_normaliser_is_flipped() -> None:
    torch.manual_seed(1)
    model = build_model("smallcnn", 1, 2).eval()
    with torch.no_grad():
        model.classifier.weight.abs_()
    x = torch.randn(1, 1, 32, 32, 32)
    ours = grad_cam(model, x, 1)[0]
    identity = GradCAM(model, "features", upsampler=lambda size: lambda t: t, postprocessing=lambda t: t)
    np.testing.assert_allclose(identity(x, class_idx=1)[0, 0].detach().numpy(), ours, rtol=1e-4, atol=1e-7)
    flipped = GradCAM(build_model("smallcnn", 1, 2).eval(), "features", upsampler=lambda size: lambda t: t)
    flipped.nn_module.model.load_state_dict(model.state_dict())
    default = flipped(x, class_idx=1)[0, 0].detach().numpy()
    assert np.unravel_index(default.argmin(), default.shape) == np.unravel_index(ours.argmax(), ours.shape)


def test_cam_from_single_volume_and_numpy_inputs() -> None:
    rng = np.random.default_rng(0)
    fmap = rng.random((5, 2, 3, 4)).astype(np.float32)
    weight = rng.normal(size=(2, 5)).astype(np.float32)
    cam = cam_from_features(fmap, weight, 1)
    expected = np.maximum(np.tensordot(weight[1], fmap, axes=1), 0)
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match=r"weight \(2, 5\)"):
        cam_from_features(fmap[:4], weight, 0)
    with pytest.raises(InputError, match="class_index 2"):
        cam_from_features(fmap, weight, 2)
    with pytest.raises(TypeError, match="keyword-only"):
        cam_from_features(fmap, weight, np.zeros(2))  # type: ignore[arg-type]


def test_mass_and_pointing_on_known_maps() -> None:
    mask = np.zeros((8, 8, 8), bool)
    mask[2:4, 2:4, 2:4] = True
    cam = np.zeros((8, 8, 8), np.float32)
    cam[3, 3, 3], cam[6, 6, 6] = 3.0, 1.0
    assert cam_mass_inside(cam, mask) == pytest.approx(0.75)
    assert pointing_game(cam, mask)
    assert not pointing_game(cam, ~mask)
    assert np.isnan(cam_mass_inside(np.zeros_like(cam), mask))
    assert not pointing_game(np.zeros_like(cam), mask)
    with pytest.raises(InputError, match="upsample"):
        cam_mass_inside(cam[:4], mask)
    up = upsample_cam(cam[None], (16, 16, 16))
    assert up.shape == (1, 16, 16, 16) and up.min() >= 0
    assert np.unravel_index(up[0].argmax(), up[0].shape) in {(6, 6, 6), (6, 6, 7), (7, 7, 7), (6, 7, 7), (7, 6, 6)}
    assert normalise_cam(cam).max() == 1.0 and normalise_cam(np.zeros_like(cam)).max() == 0.0


def test_sequence_evidence_splits_the_centred_logit_by_sequence() -> None:
    """Per-sequence evidence sums to the highest-grade logit's lead over the class mean (bias excluded)."""
    from gliomagrade.cam_eval import sequence_evidence

    torch.manual_seed(2)
    model = build_model("smallcnn", 2, 3, channels=(4, 4, 8, 8), per_sequence=True).eval()
    with torch.no_grad():
        logits, fmap = model.forward_with_features(torch.randn(1, 2, 16, 16, 16))
    ev = sequence_evidence(model, fmap, ("t1ce", "flair"), 2)
    assert set(ev) == {"evidence_t1ce", "evidence_flair"}
    unbiased = logits[0] - model.classifier.bias.detach()
    centred = unbiased - unbiased.mean()
    assert sum(ev.values()) == pytest.approx(float(centred[2]), abs=1e-5)
    dense = build_model("smallcnn", 2, 3, channels=(4, 4, 8, 8)).eval()
    assert sequence_evidence(dense, dense.forward_with_features(torch.randn(1, 2, 16, 16, 16))[1], ("t1ce", "flair"), 2) == {}
