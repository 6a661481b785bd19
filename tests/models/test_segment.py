"""Segment, then grade (``unet``): tissue codes, the amount / fraction maps, exact CAM, ONNX export, and a
U-Net that learns a toy segmentation from the segmentation loss alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagrade.engine import segmentation_loss, train_step
from gliomagrade.errors import ConfigError
from gliomagrade.explain import cam_from_features, grad_cam
from gliomagrade.export import export_onnx, ort_session
from gliomagrade.models import build_model
from gliomagrade.segment import PooledNorm, segmentation_dice, tissue_codes, tissue_fractions

KW = {"channels": (4, 8, 16), "strides": (2, 2)}


def test_tissue_codes_follow_the_brats_labels() -> None:
    seg = np.array([0, 1, 2, 3, 4, 7], dtype=np.uint8)
    np.testing.assert_array_equal(tissue_codes(seg), [0, 2, 1, 2, 3, 0])  # 7: not a BraTS label -> background
    onehot = tissue_fractions(torch.from_numpy(tissue_codes(seg)).view(1, 1, 6))
    np.testing.assert_array_equal(onehot[0].numpy(), [[0, 0, 1, 0, 0, 0], [0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]])


def test_maps_pool_to_class_amounts_and_lesion_fractions() -> None:
    """Fresh (zero running mean, unit variance), GAP of the first 3 maps = each class's share of the grid,
    of the last 3 = its share of the lesion (they sum to 1); logits = GAP + linear over them."""
    torch.manual_seed(0)
    model = build_model("unet", 2, 2, **KW).eval()
    x = torch.randn(2, 2, 16, 16, 16)
    with torch.no_grad():
        logits, fmap, seg_logits = model.forward_with_gate(x)
    assert fmap.shape == (2, 6, 16, 16, 16) and seg_logits.shape == (2, 4, 16, 16, 16)
    prob = torch.softmax(seg_logits, 1)[:, 1:]
    pooled = fmap.mean(dim=(2, 3, 4))
    torch.testing.assert_close(pooled[:, :3], prob.mean(dim=(2, 3, 4)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pooled[:, 3:].sum(1), torch.ones(2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits, pooled @ model.classifier.weight.T + model.classifier.bias)
    assert model.lesion_gated and model.feature_channels == 6


def test_pooled_norm_is_batchnorm1d_of_the_global_averages() -> None:
    """GAP of the output = BatchNorm1d(affine=False) of GAP of the input, in training and in eval; the
    centring sits where ``where`` is, so a map that is 0 there and off it stays 0."""
    torch.manual_seed(0)
    fmap = torch.rand(8, 2, 4, 4, 4) * torch.tensor([0.01, 100.0]).view(1, 2, 1, 1, 1)
    where = torch.zeros(8, 1, 4, 4, 4)
    where[:, :, 1:3, 1:3, 1:3] = 8.0  # GAP 1
    fmap[:, :, 0] = 0
    ours, ref = PooledNorm(2), torch.nn.BatchNorm1d(2, affine=False)
    for mode in (True, False):
        ours.train(mode), ref.train(mode)
        for _ in range(3 if mode else 1):
            out = ours(fmap, where)
            expected = ref(fmap.mean(dim=(2, 3, 4)))
        torch.testing.assert_close(out.mean(dim=(2, 3, 4)), expected, rtol=1e-4, atol=1e-4)
        assert (out[:, :, 0] == 0).all()


def test_cam_equals_grad_cam_although_the_maps_are_detached() -> None:
    torch.manual_seed(1)
    model = build_model("unet", 2, 3, **KW).eval()
    with torch.no_grad():
        model.classifier.weight.abs_()
    x = torch.randn(2, 2, 16, 16, 16)
    with torch.no_grad():
        _, fmap = model.forward_with_features(x)
    for k in range(3):
        cam = cam_from_features(fmap, model.classifier.weight, k)
        np.testing.assert_allclose(grad_cam(model, x, k), cam / fmap[0, 0].numel(), rtol=1e-4, atol=1e-8)
    assert all(p.grad is None for p in model.parameters())


def test_unet_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="segments the lesion itself"):
        build_model("unet", 4, 2, lesion_gate=True)
    with pytest.raises(ConfigError, match="3 channels need 2 strides"):
        build_model("unet", 4, 2, channels=(4, 8, 16), strides=(2, 2, 2))
    with pytest.raises(ConfigError, match="num_res_units"):
        build_model("unet", 4, 2, num_res_units=-1)
    with pytest.raises(ConfigError, match=r"grid \(12, 12, 12\) must be a multiple of 8"):
        build_model("unet", 1, 2, channels=(2, 2, 2, 2), strides=(2, 2, 2))(torch.zeros(1, 1, 12, 12, 12))


def test_unet_exports_with_its_maps_and_running_statistics(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build_model("unet", 4, 2, **KW)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    masks = tissue_fractions(torch.randint(0, 4, (4, 1, 16, 16, 16)))
    for _ in range(2):
        train_step(model, opt, torch.nn.functional.cross_entropy, torch.randn(4, 4, 16, 16, 16),
                   torch.tensor([0, 1, 0, 1]), lesion=masks, lesion_loss=1.0)
    model.eval()
    assert not torch.equal(model.features.norm.running_var, torch.ones(6))
    result = export_onnx(model, tmp_path, model_name="m", input_shape=(4, 16, 16, 16))
    assert result.max_abs_diff <= 1e-4 and result.feature_shape == (6, 16, 16, 16)
    x = torch.randn(1, 4, 16, 16, 16)
    _, fmap = ort_session(result.onnx_path).run(["logits", "features"], {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(fmap, model.forward_with_features(x)[1].numpy(), rtol=1e-4, atol=1e-4)


def test_the_unet_learns_to_segment_from_the_segmentation_loss_alone() -> None:
    """Bright boxes are enhancing, dim ones oedema; the grade is noise. After training, the soft cross
    entropy falls and the predicted classes overlap the boxes."""
    g = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        codes = torch.zeros(n, 1, 16, 16, 16, dtype=torch.uint8)
        x = torch.randn(n, 1, 16, 16, 16, generator=g) * 0.3
        for i in range(n):
            c = torch.randint(0, 10, (3,), generator=g)
            code = 1 + i % 2 * 2  # oedema or enhancing
            codes[i, 0, c[0]:c[0] + 6, c[1]:c[1] + 6, c[2]:c[2] + 6] = code
            x[i, 0][codes[i, 0] == code] += 1.0 * code
        return x, tissue_fractions(codes)

    torch.manual_seed(0)
    model = build_model("unet", 1, 2, **KW)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x_test, m_test = batch(8)
    with torch.no_grad():
        before = float(segmentation_loss(model.eval().forward_with_gate(x_test)[2], m_test))
    model.train()
    for _ in range(150):
        x, m = batch(8)
        train_step(model, opt, torch.nn.functional.cross_entropy, x, torch.randint(0, 2, (8,), generator=g),
                   lesion=m, lesion_loss=1.0)
    with torch.no_grad():
        seg = model.eval().forward_with_gate(x_test)[2]
    assert float(segmentation_loss(seg, m_test)) < 0.5 * before
    pred, truth = seg.argmax(1), (m_test * torch.tensor([1, 2, 3]).view(1, 3, 1, 1, 1)).sum(1)
    inter = ((pred == truth) & (truth > 0)).sum()
    assert 2 * inter / ((pred > 0).sum() + (truth > 0).sum()) > 0.7  # Dice of the classes over the lesion


def test_segmentation_dice_of_a_unet_and_of_a_gate() -> None:
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[2:6, 2:6, 2:6] = 2
    seg[3:5, 3:5, 3:5] = 4  # 8 enhancing voxels inside 56 of oedema
    logits = torch.full((4, 8, 8, 8), -5.0)
    logits[0] = 5.0
    logits[1, 2:6, 2:6, 2:6], logits[0, 2:6, 2:6, 2:6] = 5.0, -5.0  # the whole lesion called oedema
    scores = segmentation_dice(logits, seg)
    assert scores["dice_lesion"] == 1.0 and scores["dice_enhancing"] == 0.0 and np.isnan(scores["dice_core"])
    assert scores["dice_oedema"] == pytest.approx(2 * 56 / (64 + 56))
    gate = torch.full((1, 4, 4, 4), -5.0)
    gate[0, 1:3, 1:3, 1:3] = 5.0  # the same cube on a 2x coarser grid
    assert segmentation_dice(gate, seg) == {"dice_lesion": pytest.approx(1.0, abs=0.1)}  # trilinear edges
