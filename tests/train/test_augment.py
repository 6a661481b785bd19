"""Augmentation: shapes/dtypes/devices kept, seeded reproducibility, exact flips, brain-only intensity."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gliomagrade.augment import AugmentConfig, apply_params, augment_batch, sample_params, warp_masks

OFF = AugmentConfig(flip_prob=0, spatial_prob=0, intensity_prob=0, gamma_prob=0, bias_prob=0, noise_prob=0)


def _batch(b: int = 3, c: int = 2, shape: tuple[int, int, int] = (10, 12, 14)) -> torch.Tensor:
    """z-scored-looking volumes, exactly 0 outside a box 'brain'."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(b, c, *shape)
    x[:, :, 2:-2, 2:-2, 2:-2] = torch.randn(b, c, shape[0] - 4, shape[1] - 4, shape[2] - 4, generator=g)
    return x.half()


def test_keeps_shape_dtype_device_and_records_params() -> None:
    x = _batch()
    y, p = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
    assert torch.isfinite(y).all()
    assert p.theta.shape == (3, 3, 4) and p.scale.shape == (3, 2) and p.bias.shape[:2] == (3, 2)
    assert set(p.to_dict()) >= {"flip", "theta", "gamma", "noise_seed"}


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    x = _batch()
    a, pa = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(7))
    b, _ = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(7))
    c, _ = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(apply_params(x, pa), a), "replaying the recorded parameters must reproduce the batch"


def test_all_off_is_identity() -> None:
    x = _batch()
    y, _ = augment_batch(x, OFF, torch.Generator().manual_seed(0))
    assert torch.equal(y, x.float())


def test_flip_is_an_exact_left_right_flip() -> None:
    x = _batch()
    y, p = augment_batch(x, dataclasses.replace(OFF, flip_prob=1.0), torch.Generator().manual_seed(0))
    assert p.flip.all()
    assert torch.equal(y, x.float().flip(-1))


def test_identity_affine_and_quarter_turn() -> None:
    """The spatial step resamples in voxel units: a 90 degree turn of a cube equals rot90."""
    x = torch.zeros(1, 1, 8, 8, 8)
    x[0, 0, 2:6, 1:3, 4:7] = 1
    p = sample_params(x.shape, dataclasses.replace(OFF, spatial_prob=1.0, max_rotate_deg=0, max_scale=0),
                      torch.Generator().manual_seed(0))
    assert torch.allclose(apply_params(x, p), x, atol=1e-5)
    c, s = 0.0, 1.0  # rotation by +90 degrees about z (in the x-y plane)
    rot = torch.tensor([[[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0]]])
    p = dataclasses.replace(p, theta=rot)
    turned = apply_params(x, p)
    assert any(torch.allclose(turned, torch.rot90(x, k, (3, 4)), atol=1e-5) for k in (1, -1))


def test_intensity_changes_stay_inside_the_brain() -> None:
    x = _batch()
    cfg = dataclasses.replace(OFF, intensity_prob=1.0, gamma_prob=1.0, bias_prob=1.0, noise_prob=1.0)
    y, p = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    outside = x.float() == 0
    assert (y[outside] == 0).all()
    assert not torch.allclose(y[~outside], x.float()[~outside])
    assert (p.gamma != 1).all() and (p.noise_std > 0).all()


def test_gamma_is_monotone_and_keeps_the_brain_range() -> None:
    x = _batch(b=1, c=1)
    y, _ = augment_batch(x, dataclasses.replace(OFF, gamma_prob=1.0), torch.Generator().manual_seed(0))
    inside = x.float() != 0
    xi, yi = x.float()[inside], y[inside]
    order = torch.argsort(xi)
    assert (torch.diff(yi[order]) >= -1e-5).all()
    assert torch.isclose(yi.min(), xi.min(), atol=1e-3) and torch.isclose(yi.max(), xi.max(), atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_the_gpu_and_matches_the_cpu() -> None:
    x = _batch()
    p = sample_params(x.shape, AugmentConfig(), torch.Generator().manual_seed(5))
    cpu = apply_params(x, dataclasses.replace(p, noise_std=p.noise_std * 0))
    gpu = apply_params(x.cuda(), dataclasses.replace(p, noise_std=p.noise_std * 0))
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_masks_move_with_the_images_flips_and_affines() -> None:
    """warp_masks = apply_params with the intensity steps off: a lesion mask stays on its lesion."""
    torch.manual_seed(0)
    mask = torch.zeros(4, 1, 12, 12, 12)
    for i in range(4):
        c = torch.randint(3, 8, (3,))
        mask[i, 0, c[0]:c[0] + 3, c[1]:c[1] + 4, c[2]:c[2] + 2] = 1
    p = sample_params(mask.shape, dataclasses.replace(AugmentConfig(), flip_prob=0.5, spatial_prob=1.0),
                      torch.Generator().manual_seed(3))
    spatial_only = dataclasses.replace(p, scale=torch.ones_like(p.scale), shift=torch.zeros_like(p.shift),
                                       gamma=torch.ones_like(p.gamma), bias=torch.zeros_like(p.bias),
                                       noise_std=torch.zeros_like(p.noise_std))
    moved = warp_masks(mask.half(), p)
    assert moved.dtype == torch.float32 and not torch.equal(moved, mask)
    torch.testing.assert_close(moved, apply_params(mask, spatial_only))
    with pytest.raises(ValueError, match="do not fit a batch of 4"):
        warp_masks(mask[:2], p)
