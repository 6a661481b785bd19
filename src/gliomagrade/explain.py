"""Class activation maps for GAP + linear heads (exact, gradient-free), Grad-CAM, and CAM checks.

For ``logits = W @ mean_v(A[:, v]) + b`` the class activation map of class ``k`` is
``CAM_k(v) = ReLU(sum_f W[k, f] A[f, v])``. Grad-CAM's channel weights ``mean_v dlogit_k/dA[f, v]``
are ``W[k, f] / N`` (``N = d*h*w`` voxels), so Grad-CAM at ``features`` is ``CAM / N``: the same map.
Serving therefore needs only the exported feature maps and the head (no gradients).

Sign and scale: HIGH values = MORE evidence FOR ``class_index``. Functions return the *raw* map (units
of logit per voxel, before the ``1/N`` of Grad-CAM); ``normalise_cam`` divides by the map's maximum,
giving ``[0, 1]`` with 0 = no positive evidence (an all-zero map stays all zero; it is not stretched).
MONAI's ``GradCAM`` default post-processing maps (min, max) to (1, 0) -- flipped -- and its hooks stay
registered on the model, so ``grad_cam`` here uses its own, removed, hooks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from scipy import ndimage
from torch import nn

from gliomagrade.errors import InputError

ArrayLike = torch.Tensor | NDArray[np.floating]


def _as_tensor(a: ArrayLike) -> torch.Tensor:
    return (
        a.detach().float().cpu()
        if isinstance(a, torch.Tensor)
        else torch.as_tensor(np.asarray(a, np.float32))
    )


def cam_from_features(
    fmap: ArrayLike,
    weight: ArrayLike,
    class_index: int,
    *,
    bias: ArrayLike | None = None,
) -> NDArray[np.float32]:
    """Raw CAM ``ReLU(sum_f weight[k, f] * fmap[f])`` from ``(F, d, h, w)`` or ``(B, F, d, h, w)`` maps.

    With ``bias`` every voxel gets ``bias[k]`` added, so that before the ReLU the map's voxel mean is
    exactly the class logit (without it, the mean is the logit minus the bias). Returns ``(d, h, w)`` or ``(B, d, h, w)`` float32.
    """
    if not isinstance(class_index, int | np.integer) or isinstance(class_index, bool):
        raise TypeError(
            f"class_index must be an int, got {type(class_index).__name__} (bias is keyword-only)"
        )
    f, w = _as_tensor(fmap), _as_tensor(weight)
    single = f.ndim == 4
    if single:
        f = f[None]
    if f.ndim != 5 or w.ndim != 2 or w.shape[1] != f.shape[1]:
        raise InputError(
            f"feature maps {tuple(_as_tensor(fmap).shape)} and head weight {tuple(w.shape)} do not match; "
            "expected (B, F, d, h, w) or (F, d, h, w) with weight (K, F)"
        )
    if not 0 <= class_index < w.shape[0]:
        raise InputError(f"class_index {class_index} out of range for a head with {w.shape[0]} classes")
    cam = torch.einsum("bfdhw,f->bdhw", f, w[class_index])
    if bias is not None:
        cam = cam + _as_tensor(bias).reshape(-1)[class_index]
    out = F.relu(cam).cpu().numpy().astype(np.float32)
    return out[0] if single else out


def normalise_cam(cam: NDArray[np.floating]) -> NDArray[np.float32]:
    """Scale a non-negative CAM to ``[0, 1]`` by its maximum (per map when batched ``(B, d, h, w)``)."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.min(initial=0.0) < 0:
        raise InputError("normalise_cam expects a ReLU'd (non-negative) map; got negative values")
    if cam.ndim == 4:
        return np.stack([normalise_cam(c) for c in cam])
    peak = float(cam.max(initial=0.0))
    return cam / peak if peak > 0 else np.zeros_like(cam)


def model_cam(model: nn.Module, x: torch.Tensor, class_index: int) -> NDArray[np.float32]:
    """Exact CAM of a ``GradingNet`` from one forward pass (no gradients): ``(B, d, h, w)``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, fmap = model.forward_with_features(x)  # type: ignore[operator]
    finally:
        model.train(was_training)
    return cam_from_features(fmap, model.classifier.weight, class_index)  # type: ignore[arg-type]


def grad_cam(
    model: nn.Module, x: torch.Tensor, class_index: int, layer: str = "features"
) -> NDArray[np.float32]:
    """Grad-CAM at ``layer`` (a named submodule): ``ReLU(sum_f mean_v(dlogit/dA_f) * A_f)``, ``(B, d, h, w)``.

    Runs in eval mode, leaves ``.grad`` of the parameters untouched and removes its hook afterwards.
    """
    target = dict(model.named_modules()).get(layer)
    if target is None:
        raise InputError(f"layer {layer!r} not found in {type(model).__name__}")
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, out: torch.Tensor) -> torch.Tensor:
        if not out.requires_grad:  # a unet's maps are detached from its input by design
            out = out.detach().requires_grad_(True)
        captured.append(out)
        return out

    handle = target.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)  # keeps the graph even with frozen weights
            logits = model(xg)
            if not 0 <= class_index < logits.shape[1]:
                raise InputError(f"class_index {class_index} out of range for {logits.shape[1]} classes")
            acts = captured[-1]
            (grads,) = torch.autograd.grad(logits[:, class_index].sum(), acts)
    finally:
        handle.remove()
        model.train(was_training)
    alpha = grads.flatten(2).mean(dim=2)
    cam = torch.einsum("bf...,bf->b...", acts.detach(), alpha)
    return F.relu(cam).cpu().numpy().astype(np.float32)


def upsample_cam(cam: NDArray[np.floating], size: tuple[int, ...]) -> NDArray[np.float32]:
    """Trilinear resize of ``(d, h, w)`` or ``(B, d, h, w)`` maps to ``size`` (the input grid)."""
    t = torch.as_tensor(np.asarray(cam, dtype=np.float32))
    single = t.ndim == len(size)
    t = t[None, None] if single else t[:, None]
    mode = "trilinear" if len(size) == 3 else "bilinear"
    out = F.interpolate(t, size=tuple(size), mode=mode, align_corners=False)[:, 0].clamp_min(0)
    return (out[0] if single else out).numpy()


def tumour_mask(seg: NDArray[np.integer]) -> NDArray[np.bool_]:
    """Tumour + oedema (any non-zero BraTS label) as a boolean mask."""
    return np.asarray(seg) > 0


def _check_same_grid(cam: NDArray[np.floating], mask: NDArray[np.generic]) -> tuple[NDArray, NDArray]:
    cam, mask = np.asarray(cam), np.asarray(mask).astype(bool)
    if cam.shape != mask.shape:
        raise InputError(
            f"CAM shape {cam.shape} differs from mask shape {mask.shape}; upsample the CAM first"
        )
    return cam, mask


def cam_mass_inside(cam: NDArray[np.floating], mask: NDArray[np.generic]) -> float:
    """Fraction of the positive CAM mass inside ``mask`` (tumour + oedema); NaN for an all-zero CAM."""
    cam, mask = _check_same_grid(cam, mask)
    positive = np.clip(cam, 0, None)
    total = float(positive.sum())
    return float(positive[mask].sum() / total) if total > 0 else float("nan")


def pointing_game(cam: NDArray[np.floating], mask: NDArray[np.generic], tolerance: int = 0) -> bool:
    """True when the CAM's maximum lies in ``mask`` dilated by ``tolerance`` voxels (False if the CAM is 0)."""
    cam, mask = _check_same_grid(cam, mask)
    if not np.any(cam > 0):
        return False
    if tolerance > 0:
        mask = ndimage.binary_dilation(mask, iterations=tolerance)
    return bool(mask.flat[int(np.argmax(cam))])
