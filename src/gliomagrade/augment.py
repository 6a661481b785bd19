"""Batch augmentation on the device the data lives on: seeded parameters, then a deterministic transform.

``sample_params`` draws every random parameter of a batch from a seeded CPU ``torch.Generator`` and
returns them as an ``AugmentParams`` record; ``apply_params`` is a pure function of the batch and that
record. The training loop calls ``augment_batch`` (both); tests and audits replay a record exactly.

Choices for preprocessed tensors (``C x D x H x W``, z-scored in the brain, 0 outside, template space):
- Flip: left-right only. Arrays come from SimpleITK as ``(z, y, x)``, so ``x`` (last axis, ``W``) is
  left-right in the (MNI, RAS/LPS-aligned) template grid. Brains are near-symmetric across the
  mid-sagittal plane and gliomas occur on either side; an up-down or front-back flip makes anatomy no
  scanner produces.
- Rotation (each axis, +-``max_rotate_deg``) and isotropic scaling (+-``max_scale``) in one
  ``affine_grid``/``grid_sample`` per batch: residual registration error, head size. The affine is
  built in voxel units and mapped into normalised coordinates, so non-cubic grids are not sheared.
  Zero padding matches the preprocessing's 0 outside the brain.
- Gamma and bias field act on positive intensities, but z-scored values are signed: each channel is
  min-max mapped to [0, 1] over the brain, gamma and the multiplicative field are applied there, and
  the result is mapped back to the original range, so the transform stays monotone (gamma) and the
  z-score scale is kept. The bias field is ``exp`` of a random 3D polynomial (degree 2, Legendre
  terms), as slow as a real receive-coil field.
- Intensity scale/shift per channel (scanner and normalisation differences) and Gaussian noise.
- Everything after the spatial step is applied inside the brain only (the foreground after
  resampling): serving tensors are exactly 0 outside the brain, so training tensors stay that way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

N_BIAS_TERMS = 9
"""Degree-2 polynomial in (x, y, z) without the constant: x, y, z, P2(x), P2(y), P2(z), xy, xz, yz."""


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (per sample) and ranges of each transform."""

    flip_prob: float = 0.5
    flip_axis: int = -1
    """Left-right axis of a ``B x C x D x H x W`` tensor (``W`` = template x)."""
    spatial_prob: float = 0.5
    max_rotate_deg: float = 10.0
    max_scale: float = 0.1
    intensity_prob: float = 0.5
    max_intensity_scale: float = 0.1
    max_intensity_shift: float = 0.1
    gamma_prob: float = 0.3
    max_log_gamma: float = 0.3
    bias_prob: float = 0.3
    max_bias_coeff: float = 0.3
    noise_prob: float = 0.3
    max_noise_std: float = 0.1


@dataclass(frozen=True)
class AugmentParams:
    """Every random choice for one batch (CPU tensors); identity values where a transform is off."""

    flip: torch.Tensor  # (B,) bool
    theta: torch.Tensor  # (B, 3, 4) float32, normalised-coordinate affine for affine_grid
    spatial: torch.Tensor  # (B,) bool: resample this sample
    scale: torch.Tensor  # (B, C)
    shift: torch.Tensor  # (B, C)
    gamma: torch.Tensor  # (B, C)
    bias: torch.Tensor  # (B, C, N_BIAS_TERMS)
    noise_std: torch.Tensor  # (B,)
    noise_seed: int
    flip_axis: int = -1

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, for logs and audits."""
        return {f.name: (v.tolist() if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
                for f in fields(self)}


def _uniform(gen: torch.Generator, shape: tuple[int, ...], bound: float) -> torch.Tensor:
    """U(-bound, bound) from the generator."""
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def _coin(gen: torch.Generator, n: int, p: float) -> torch.Tensor:
    """n Bernoulli(p) draws (bool)."""
    return torch.rand((n,), generator=gen) < p


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles in radians about x, y, z -> (B, 3, 3) rotation matrices (Rz @ Ry @ Rx)."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1).view(-1, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1).view(-1, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def _theta(rot: torch.Tensor, zoom: torch.Tensor, spatial: tuple[int, int, int]) -> torch.Tensor:
    """Voxel-space rotation/zoom about the centre -> affine_grid's normalised (x, y, z) theta (B, 3, 4)."""
    d, h, w = spatial
    half = torch.tensor([w, h, d], dtype=torch.float32) / 2  # affine_grid orders coordinates x, y, z
    a = rot / zoom.view(-1, 1, 1)  # output -> input sampling: zoom > 1 magnifies
    a = a * (1 / half).view(1, 3, 1) * half.view(1, 1, 3)  # E^-1 A E
    return torch.cat([a, torch.zeros(a.shape[0], 3, 1)], dim=2)


def sample_params(
    shape: tuple[int, ...] | torch.Size, cfg: AugmentConfig, generator: torch.Generator
) -> AugmentParams:
    """Draw the random parameters of one ``B x C x D x H x W`` batch from a seeded CPU generator."""
    b, c = int(shape[0]), int(shape[1])
    spatial_dims = (int(shape[2]), int(shape[3]), int(shape[4]))
    flip = _coin(generator, b, cfg.flip_prob)
    spatial = _coin(generator, b, cfg.spatial_prob)
    angles = _uniform(generator, (b, 3), math.radians(cfg.max_rotate_deg)) * spatial.view(b, 1)
    zoom = 1 + _uniform(generator, (b,), cfg.max_scale) * spatial
    inten = _coin(generator, b, cfg.intensity_prob).view(b, 1)
    scale = 1 + _uniform(generator, (b, c), cfg.max_intensity_scale) * inten
    shift = _uniform(generator, (b, c), cfg.max_intensity_shift) * inten
    gamma = torch.exp(_uniform(generator, (b, c), cfg.max_log_gamma) * _coin(generator, b, cfg.gamma_prob).view(b, 1))
    bias_on = _coin(generator, b, cfg.bias_prob).view(b, 1, 1)
    bias = _uniform(generator, (b, c, N_BIAS_TERMS), cfg.max_bias_coeff) * bias_on
    noise_std = torch.rand((b,), generator=generator) * cfg.max_noise_std * _coin(generator, b, cfg.noise_prob)
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return AugmentParams(
        flip=flip,
        theta=_theta(_rotation(angles), zoom, spatial_dims),
        spatial=spatial,
        scale=scale,
        shift=shift,
        gamma=gamma,
        bias=bias,
        noise_std=noise_std,
        noise_seed=noise_seed,
        flip_axis=cfg.flip_axis,
    )


_BASIS_CACHE: dict[tuple[tuple[int, int, int], str], torch.Tensor] = {}


def bias_basis(spatial: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """The ``N_BIAS_TERMS x D x H x W`` polynomial basis on [-1, 1]^3 (cached per grid and device)."""
    key = (spatial, str(device))
    if key not in _BASIS_CACHE:
        z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, n, device=device) for n in spatial), indexing="ij")

        def p2(t: torch.Tensor) -> torch.Tensor:
            return (3 * t * t - 1) / 2

        _BASIS_CACHE[key] = torch.stack([x, y, z, p2(x), p2(y), p2(z), x * y, x * z, y * z])
    return _BASIS_CACHE[key]


def _brain_range(x: torch.Tensor, fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and channel min and max over the foreground, ``(B, C, 1, 1, 1)`` each."""
    lo = torch.where(fg, x, torch.inf).amin(dim=(2, 3, 4), keepdim=True)
    hi = torch.where(fg, x, -torch.inf).amax(dim=(2, 3, 4), keepdim=True)
    empty = ~torch.isfinite(lo)
    return torch.where(empty, 0.0, lo), torch.where(empty, 1.0, hi)


_TENSOR_FIELDS = ("flip", "theta", "spatial", "scale", "shift", "gamma", "bias", "noise_std")


def _on_device(p: AugmentParams, device: torch.device) -> dict[str, torch.Tensor]:
    """The parameter tensors (and the indices of resampled samples) on ``device`` in ONE pinned,
    asynchronous copy: a pageable host->device copy per tensor would synchronise the stream each time
    and stall the GPU between steps."""
    parts = {name: getattr(p, name) for name in _TENSOR_FIELDS}
    parts["sel"] = torch.nonzero(p.spatial).flatten()
    if device.type != "cuda":
        return {k: v.to(device) for k, v in parts.items()}
    flat = torch.cat([t.reshape(-1).to(torch.float32) for t in parts.values()])
    flat = flat.pin_memory().to(device, non_blocking=True)
    out, i = {}, 0
    for name, t in parts.items():
        out[name] = flat[i : i + t.numel()].view(t.shape).to(t.dtype)  # bools and small ints are exact
        i += t.numel()
    return out


def _gamma_bias(x: torch.Tensor, fg: torch.Tensor, d: dict[str, torch.Tensor], with_bias: bool) -> torch.Tensor:
    """Gamma and multiplicative bias field on the min-max-mapped [0, 1] brain, mapped back."""
    lo, hi = _brain_range(x, fg)
    span = (hi - lo).clamp_min(1e-6)
    u = ((x - lo) / span).clamp(0, 1) ** d["gamma"][..., None, None, None]
    if with_bias:
        basis = bias_basis((x.shape[2], x.shape[3], x.shape[4]), x.device)
        u = u * torch.exp(torch.einsum("bct,tdhw->bcdhw", d["bias"], basis))
    return lo + u * span


def _warp(out: torch.Tensor, p: AugmentParams, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """The spatial part of ``p`` (flip, then rotation/zoom by trilinear resampling) on a float32 batch."""
    b = out.shape[0]
    if bool(p.flip.any()):
        out = torch.where(d["flip"].view(b, 1, 1, 1, 1), out.flip(p.flip_axis), out)
    if bool(p.spatial.any()):
        sel = d["sel"]
        sub = out.index_select(0, sel)
        grid = F.affine_grid(d["theta"].index_select(0, sel), list(sub.shape), align_corners=False)
        out = out.index_copy(0, sel, F.grid_sample(sub, grid, mode="bilinear", padding_mode="zeros",
                                                   align_corners=False))
    return out


def warp_masks(masks: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Move ``(B, C, D, H, W)`` masks with the batch's flips and affines (no intensity steps), as float32
    fractions: the lesion targets of an augmented batch stay on the lesion they describe."""
    if masks.ndim != 5 or masks.shape[0] != p.flip.shape[0]:
        raise ValueError(f"masks of shape {tuple(masks.shape)} do not fit a batch of {p.flip.shape[0]} (B, C, D, H, W)")
    return _warp(masks.to(dtype=torch.float32, copy=True).contiguous(), p, _on_device(p, masks.device))


def apply_params(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Apply a recorded set of parameters to a batch; deterministic, returns a new float32 tensor.

    Which steps run is decided from the CPU copy of the parameters, so nothing here waits on the GPU.
    """
    dev = x.device
    b = x.shape[0]
    d = _on_device(p, dev)
    out = _warp(x.to(dtype=torch.float32, copy=True).contiguous(), p, d)
    fg = (out != 0).any(dim=1, keepdim=True)
    with_bias = bool((p.bias != 0).any())
    if with_bias or bool((p.gamma != 1).any()):
        out = _gamma_bias(out, fg, d, with_bias)
    out = out * d["scale"][..., None, None, None] + d["shift"][..., None, None, None]
    if bool((p.noise_std > 0).any()):
        gen = torch.Generator(device=dev).manual_seed(p.noise_seed)
        noise = torch.randn(out.shape, generator=gen, device=dev, dtype=out.dtype)
        out = out + noise * d["noise_std"].view(b, 1, 1, 1, 1)
    return torch.where(fg, out, 0.0)


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, AugmentParams]:
    """Draw parameters for this batch and apply them; returns the float32 batch and the record."""
    params = sample_params(x.shape, cfg, generator)
    return apply_params(x, params), params
