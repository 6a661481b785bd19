"""The device-level pieces of training, torch-only so the benchmark can import them on a bare GPU box.

One train step, batched inference, and the GPU settings of the full profile: bf16 autocast (no loss
scaling needed: bf16 has fp32's exponent range), ``channels_last_3d`` for cuDNN's NDHWC kernels, TF32
matmuls/convolutions, optional ``torch.compile``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from gliomagrade.augment import AugmentConfig, augment_batch, warp_masks
from gliomagrade.segment import tissue_fractions

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but torch sees no CUDA GPU (torch {torch.__version__})")
    return torch.device(name)


def setup_backends(device: torch.device, *, num_threads: int = 0) -> None:
    """TF32 and cuDNN autotuning on CUDA (fixed shapes); CPU thread count when given."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 autocast on CUDA when ``amp``; None (full precision) otherwise, CPU included."""
    return torch.bfloat16 if amp and device.type == "cuda" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast`` for ``dtype``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare_model(model: nn.Module, device: torch.device, *, channels_last: bool) -> nn.Module:
    """Move to the device, in ``channels_last_3d`` layout when asked (CUDA only: it slows CPU convs)."""
    model = model.to(device)
    if channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def maybe_compile(model: nn.Module, enabled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)`` when enabled and available; the eager model (with a warning) otherwise."""
    if not enabled:
        return model
    if not hasattr(torch, "compile"):
        log.warning("torch %s has no torch.compile; running eagerly", torch.__version__)
        return model
    try:
        return torch.compile(model)  # type: ignore[return-value]
    except Exception as exc:  # noqa: BLE001 - compile is an optimisation; eager is correct
        log.warning("torch.compile failed (%s); running eagerly", exc)
        return model


def prepare_batch(
    x: torch.Tensor,
    *,
    channels_last: bool,
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """float16 batch -> float32 model input, augmented (on its device) when a config is given."""
    return prepare_pair(x, None, channels_last=channels_last, augment=augment, generator=generator)[0]


def prepare_pair(
    x: torch.Tensor,
    masks: torch.Tensor | None,
    *,
    channels_last: bool,
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``prepare_batch`` plus ``(B, 1, D, H, W)`` tissue codes (``segment.tissue_codes``) as ``(B, 3, D, H,
    W)`` float32 masks of oedema / core / enhancing, moved by the same flips and affines."""
    masks = None if masks is None else tissue_fractions(masks)
    if augment is not None:
        if generator is None:
            raise ValueError("augmentation needs a seeded torch.Generator")
        x, params = augment_batch(x, augment, generator)
        masks = None if masks is None else warp_masks(masks, params)
    else:
        x = x.float()
    if channels_last and x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x, masks


def lesion_targets(masks: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Each cell's share of every tissue class: ``(B, 3, D, H, W)`` masks averaged onto ``grid``."""
    pool = F.adaptive_avg_pool3d if masks.ndim == 5 else F.adaptive_avg_pool2d
    return pool(masks.float(), grid).clamp(0, 1)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """A lesion gate's ``(B, 1, ...)`` logits: binary cross entropy against each cell's lesion fraction; a
    U-Net's ``(B, 4, ...)``: soft cross entropy against background + the tissue classes' fractions."""
    target = lesion_targets(masks, tuple(logits.shape[2:]))
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits.float(), target.sum(dim=1, keepdim=True).clamp(0, 1))
    target = torch.cat([(1.0 - target.sum(dim=1, keepdim=True)).clamp(0, 1), target], dim=1)
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def train_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    dtype: torch.dtype | None = None,
    feature_l1: float = 0.0,
    sequence_loss: float = 0.0,
    lesion: torch.Tensor | None = None,
    lesion_loss: float = 0.0,
) -> torch.Tensor:
    """One optimisation step; returns the detached loss (on the device: no sync per step).

    ``feature_l1`` > 0 adds that multiple of the mean |last feature map| (``model`` must then be a
    ``GradingNet``): evidence-free tissue is pushed to zero activation, so the exact CAM is sparse and
    points at what drove the call instead of carrying a brain-wide offset. ``sequence_loss`` > 0 adds
    that multiple of the mean loss of each per-sequence encoder's logit share (``sequence_logits``;
    nothing for a model with one encoder). ``lesion_loss`` > 0 with ``lesion`` masks ``(B, 3, D, H, W)``
    (``prepare_pair``) adds that multiple of the ``segmentation_loss`` of a ``lesion_gated`` model's
    segmentation logits (nothing otherwise).
    """
    optimizer.zero_grad(set_to_none=True)
    per_sequence = sequence_loss > 0 and getattr(model, "sequence_groups", 1) > 1
    gated = lesion is not None and lesion_loss > 0 and getattr(model, "lesion_gated", False)
    gate_logits = None
    with autocast(x.device, dtype):
        if gated:
            logits, fmap, gate_logits = model.forward_with_gate(x)  # type: ignore[attr-defined]
        elif feature_l1 > 0 or per_sequence:
            logits, fmap = model.forward_with_features(x)  # type: ignore[attr-defined]
        else:
            logits = model(x)
    loss = loss_fn(logits.float(), y)
    if feature_l1 > 0:
        loss = loss + feature_l1 * fmap.float().abs().mean()
    if per_sequence:
        shares = model.sequence_logits(fmap)  # type: ignore[attr-defined]
        loss = loss + sequence_loss * torch.stack([loss_fn(shares[:, g], y) for g in range(shares.shape[1])]).mean()
    if gate_logits is not None:
        assert lesion is not None  # gated implies masks
        loss = loss + lesion_loss * segmentation_loss(gate_logits, lesion)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict_logits(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    *,
    dtype: torch.dtype | None,
    channels_last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated float32 logits and labels of every batch (model must already be in eval mode)."""
    logits, labels = [], []
    for x16, y in batches:
        x = prepare_batch(x16, channels_last=channels_last)
        with autocast(x.device, dtype):
            out = model(x)
        logits.append(out.float())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)
