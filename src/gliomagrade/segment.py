"""Segment, then grade: a U-Net finds oedema, tumour core and enhancing tumour; a linear head reads how
much of each there is and what share of the lesion each takes.

The grade evidence a radiologist reads is mostly the lesion's make-up: enhancement and necrosis on
t1ce, how far the oedema reaches on T2/FLAIR. ``SegmentThenGrade`` makes that explicit. A MONAI U-Net,
trained only by a segmentation loss (``TrainConfig.lesion_loss``: soft cross entropy against the
masks of the ``TISSUE_CLASSES``), gives class probabilities ``p_c`` on the input grid. Its feature maps
are, detached, ``[p_c, p_c / mean(lesion)]`` standardised as their global averages would be by
``BatchNorm1d`` (``PooledNorm``), so the global average is each class's share of the grid (an amount)
and of the lesion (a fraction), standardised.
The head is the usual GAP + linear, so the class activation map is exact and lies on the predicted
lesion by construction (training.md, round 8: CAM mass 0.71, pointing 0.80 over cohort C's full CV).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gliomagrade.errors import ConfigError

TISSUE_CLASSES: tuple[str, ...] = ("oedema", "core", "enhancing")
"""Classes the U-Net segments besides background, with the BraTS labels of each (``tissue_codes``)."""
_BRATS_CODES = {2: 1, 1: 2, 3: 2, 4: 3}
"""BraTS label -> tissue code: 2 oedema -> 1; 1 necrosis / non-enhancing and 3 (legacy non-enhancing)
-> 2 core; 4 enhancing -> 3. Anything else (0, unknown) is background."""


def tissue_codes(seg: np.ndarray) -> np.ndarray:
    """uint8 tissue codes (0 background, then ``TISSUE_CLASSES`` in order) of a BraTS label array."""
    out = np.zeros(seg.shape, dtype=np.uint8)
    for label, code in _BRATS_CODES.items():
        out[seg == label] = code
    return out


def tissue_fractions(codes: torch.Tensor) -> torch.Tensor:
    """``(B, 1, *grid)`` tissue codes -> ``(B, 3, *grid)`` float32 one-hot masks (warpable fractions)."""
    classes = torch.arange(1, len(TISSUE_CLASSES) + 1, device=codes.device, dtype=codes.dtype)
    shape = (1, -1) + (1,) * (codes.ndim - 2)
    return (codes == classes.view(shape)).float()


class PooledNorm(nn.Module):
    """``BatchNorm1d`` (no affine) of the maps' global averages, done on the maps themselves.

    ``out = (fmap - mean * where) / std`` per channel, where ``where`` is a 1-channel map whose global
    average is 1 (the lesion probability over its mean): GAP of the output is exactly the standardised
    GAP of the input, so the head stays GAP + linear, while the centring lands on the predicted lesion
    and the maps stay 0 off it (the CAM too). Batch statistics in training, running statistics
    otherwise (constants in the exported graph).
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, fmap: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        mean, var = self.running_mean, self.running_var
        if self.training and fmap.shape[0] > 1:
            pooled = fmap.detach().float().flatten(2).mean(dim=2)
            mean, var = pooled.mean(dim=0), pooled.var(dim=0, unbiased=False)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(pooled.var(dim=0, unbiased=True), self.momentum)
        shape = (1, -1) + (1,) * (fmap.ndim - 2)
        mean, std = mean.to(fmap.dtype).view(shape), torch.sqrt(var + self.eps).to(fmap.dtype).view(shape)
        return (fmap - mean * where) / std


class SegmentThenGrade(nn.Module):
    """MONAI U-Net -> detached class amounts and lesion fractions: the feature maps of a GAP + linear head.

    ``forward_with_logits`` returns the maps ``(B, 2 * 3, *grid)`` and the U-Net's logits
    ``(B, 4, *grid)`` (background + ``TISSUE_CLASSES``), which the segmentation loss trains.
    """

    def __init__(self, in_channels: int, spatial_dims: int, channels: tuple[int, ...], strides: tuple[int, ...],
                 num_res_units: int, norm: str) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        self.unet = UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=len(TISSUE_CLASSES) + 1,
                         channels=channels, strides=strides, num_res_units=num_res_units, norm=norm)
        self.norm = PooledNorm(2 * len(TISSUE_CLASSES))
        self.multiple = int(np.prod(strides))

    def forward_with_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised maps ``[p_c, p_c / mean(lesion)]`` and the segmentation logits."""
        grid = tuple(x.shape[2:])
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
        if not tracing and any(int(s) % self.multiple for s in grid):
            raise ConfigError(f"unet: input grid {grid} must be a multiple of {self.multiple} (the product of its "
                              "strides) in every axis; change preprocess.grid or model_kwargs.strides")
        logits = self.unet(x)
        prob = torch.softmax(logits.detach().float(), dim=1)[:, 1:]
        lesion = prob.sum(dim=1, keepdim=True)
        mean_lesion = lesion.mean(dim=tuple(range(2, prob.ndim)), keepdim=True) + 1e-6
        fmap = torch.cat([prob, prob / mean_lesion], dim=1)
        return self.norm(fmap, lesion / mean_lesion).to(logits.dtype), logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_logits(x)[0]



def segmentation_dice(logits: torch.Tensor, seg: np.ndarray) -> dict[str, float]:
    """Dice of one case's predicted segmentation against its BraTS labels ``seg`` (NaN where both are
    empty): ``dice_lesion`` from a lesion gate's ``(1, ...)`` logits (upsampled to the grid) or a unet's
    ``(4, ...)``, which also gives ``dice_<class>`` for each of the ``TISSUE_CLASSES``."""
    from monai.metrics import compute_dice

    truth = torch.from_numpy(tissue_codes(seg)).long()
    up = nn.functional.interpolate(logits[None].float(), size=truth.shape, mode="trilinear", align_corners=False)[0]
    pred = (up[0] > 0).long() if up.shape[0] == 1 else up.argmax(dim=0)
    pairs = {"lesion": (pred > 0, truth > 0)}
    if up.shape[0] > 1:
        pairs |= {name: (pred == code, truth == code) for code, name in enumerate(TISSUE_CLASSES, start=1)}

    def dice(a: torch.Tensor, b: torch.Tensor) -> float:
        onehot = [torch.stack([~m, m])[None].float() for m in (a, b)]
        return float(compute_dice(onehot[0], onehot[1], include_background=False, ignore_empty=True))

    return {f"dice_{name}": dice(a, b) for name, (a, b) in pairs.items()}
