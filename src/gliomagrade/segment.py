"""Segment, then grade: a U-Net finds oedema, tumour core and enhancing tumour; a linear head reads how
much of each there is and what share of the lesion each takes.

The grade evidence a radiologist reads is mostly the lesion's make-up: enhancement and necrosis on
t1ce, how far the oedema reaches on T2/FLAIR. ``SegmentThenGrade`` makes that explicit. A MONAI U-Net,
trained only by a segmentation loss (``TrainConfig.lesion_loss``: soft cross entropy against the
masks of the ``TISSUE_CLASSES``), gives class probabilities ``p_c`` on the input grid. Its feature maps
are, detached, ``[p_c, p_c / mean(lesion)]`` divided per channel by a running scale (``PooledScale``),
so their global average is each class's share of the grid (an amount) and of the lesion (a fraction).
The head is the usual GAP + linear, so the class activation map is exact and lies on the predicted
lesion by construction (training.md, round 7: CAM mass 0.83, pointing 0.97 on cohort C, folds 0-2).
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


class PooledScale(nn.Module):
    """Divide each channel of a map by the running standard deviation of its global average.

    The GAP of the output is then ~unit-scale per channel (what ``BatchNorm1d`` would do to the pooled
    values) while the map keeps its zero where the lesion is absent: no centring, so the CAM outside
    the predicted lesion stays 0 and the linear head's bias absorbs the mean. Batch statistics in
    training, running statistics otherwise (a constant in the exported graph).
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        var = self.running_var
        if self.training and fmap.shape[0] > 1:
            var = fmap.detach().float().flatten(2).mean(dim=2).var(dim=0, unbiased=False)
            self.running_var.lerp_(var, self.momentum)
        shape = (1, -1) + (1,) * (fmap.ndim - 2)
        return fmap / torch.sqrt(var + self.eps).to(fmap.dtype).view(shape)


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
        self.scale = PooledScale(2 * len(TISSUE_CLASSES))
        self.multiple = int(np.prod(strides))

    def forward_with_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled maps ``[p_c, p_c / mean(lesion)]`` and the segmentation logits."""
        grid = tuple(x.shape[2:])
        if any(int(s) % self.multiple for s in grid) and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            raise ConfigError(f"unet: input grid {grid} must be a multiple of {self.multiple} (the product of its "
                              "strides) in every axis; change preprocess.grid or model_kwargs.strides")
        logits = self.unet(x)
        prob = torch.softmax(logits.detach().float(), dim=1)[:, 1:]
        lesion = prob.sum(dim=1, keepdim=True).mean(dim=tuple(range(2, prob.ndim)), keepdim=True)
        fmap = torch.cat([prob, prob / (lesion + 1e-6)], dim=1)
        return self.scale(fmap).to(logits.dtype), logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_logits(x)[0]

