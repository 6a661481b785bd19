"""Grading networks: MONAI 3D trunks behind one interface that makes CAM exact.

Every network is a ``GradingNet``: a convolutional trunk ``.features`` (ending with the last norm +
activation) -> global average pooling -> optional dropout -> ``.classifier`` (``nn.Linear(F, K)``).
With a GAP + linear head the class activation map ``sum_f w[k, f] * fmap[f]`` is exact, and equals
Grad-CAM, so serving needs the feature maps and the head's weights, never gradients.

The trunks reuse MONAI's modules *with MONAI's parameter names* (``features.conv0`` for DenseNet,
``features.layer1`` for ResNet, ``features._blocks`` for EfficientNet); ``to_monai_key`` maps a
``GradingNet`` state-dict key to the key of the plain MONAI network, so MONAI-format weights load
directly and our tests can check the wrapper computes exactly what MONAI's network computes.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gliomagrade.constants import GATE_OPTIONS
from gliomagrade.errors import ConfigError
from gliomagrade.segment import TISSUE_CLASSES, SegmentThenGrade

MODEL_NAMES: tuple[str, ...] = (
    "smallcnn",
    "densenet121",
    "resnet10",
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet-b0",
    "unet",
)
"""Names accepted by ``build_model`` (``TrainConfig.model``)."""

# name -> (block, layers, shortcut_type, bias_downsample): MONAI's ``resnet_params``, i.e. the
# MedicalNet conventions, so MedicalNet checkpoints load without architecture changes.
_RESNET_ARCH: dict[str, tuple[str, list[int], str, bool]] = {
    "resnet10": ("basic", [1, 1, 1, 1], "B", False),
    "resnet18": ("basic", [2, 2, 2, 2], "A", True),
    "resnet34": ("basic", [3, 4, 6, 3], "A", True),
    "resnet50": ("bottleneck", [3, 4, 6, 3], "B", False),
}
_RESNET_TRUNK = ("conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4")


class GradingNet(nn.Module):
    """Conv trunk -> global average pooling -> dropout -> linear head; CAM-exact by construction."""

    def __init__(
        self,
        features: nn.Module,
        feature_channels: int,
        num_classes: int,
        *,
        name: str,
        in_channels: int,
        spatial_dims: int = 3,
        dropout: float = 0.0,
        classifier: nn.Linear | None = None,
        arch: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.feature_channels = feature_channels
        self.spatial_dims = spatial_dims
        self.dropout_p = float(dropout)
        self.arch: dict[str, Any] = dict(arch or {})
        """Extra ``build_model`` keyword arguments needed to rebuild this exact architecture."""
        self.features = features
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = classifier if classifier is not None else nn.Linear(feature_channels, num_classes)
        if (self.classifier.in_features, self.classifier.out_features) != (feature_channels, num_classes):
            raise ConfigError(
                f"{name}: classifier is Linear({self.classifier.in_features}, {self.classifier.out_features}), "
                f"expected Linear({feature_channels}, {num_classes})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K)``."""
        logits, _ = self.forward_with_features(x)
        return logits

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K)`` and the last feature maps ``(B, F, d, h, w)`` they are pooled from."""
        self._check_input(x)
        fmap = self.features(x)
        return self.head(fmap), fmap

    def forward_with_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits, feature maps and the segmentation logits ``lesion_loss`` trains (``lesion_gated``; else None)."""
        if not self.lesion_gated:
            logits, fmap = self.forward_with_features(x)
            return logits, fmap, None
        self._check_input(x)
        fmap, gate_logits = self.features.forward_with_logits(x)  # type: ignore[operator]
        return self.head(fmap), fmap, gate_logits

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """GAP -> dropout -> linear: the logits of feature maps ``(B, F, d, h, w)``."""
        return self.classifier(self.dropout(fmap.flatten(2).mean(dim=2)))

    @property
    def lesion_gated(self) -> bool:
        """Whether the features come with segmentation logits that ``lesion_loss`` trains: a lesion gate's
        ``(B, 1, ...)`` or a ``unet``'s ``(B, 4, ...)`` (``forward_with_gate``)."""
        return isinstance(self.features, (LesionGate, SegmentThenGrade))

    @property
    def sequence_groups(self) -> int:
        """Number of per-sequence encoders (``per_sequence`` smallcnn: one per input), else 1."""
        return self.in_channels if self.arch.get("per_sequence") else 1

    def sequence_logits(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(B, G, K)``: each encoder's share of the logits, ``W[:, group] @ GAP(fmap[group]) + b``.

        The full logits are ``sum_g (share_g - b) + b``; training each share to grade on its own (an
        auxiliary loss) keeps the weaker sequences' encoders from going unused.
        """
        g = self.sequence_groups
        pooled = fmap.float().flatten(2).mean(dim=2)
        w = self.classifier.weight.float()
        share = torch.einsum("bgf,kgf->bgk", pooled.view(pooled.shape[0], g, -1), w.view(w.shape[0], g, -1))
        return share + self.classifier.bias.float()

    def _check_input(self, x: torch.Tensor) -> None:
        """Refuse a tensor of the wrong rank or channel count, saying found vs expected."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"{self.name}: input has shape {tuple(x.shape)}, expected (B, {self.in_channels}, "
                f"{', '.join('*' * self.spatial_dims)}) with {self.in_channels} channels"
            )

    def config(self) -> dict[str, Any]:
        """The ``build_model`` arguments that rebuild this architecture (saved in checkpoints)."""
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "spatial_dims": self.spatial_dims,
            "dropout": self.dropout_p,
            "feature_channels": self.feature_channels,
            "arch": dict(self.arch),
        }


def build_model(
    name: str,
    in_channels: int,
    num_classes: int,
    *,
    spatial_dims: int = 3,
    dropout: float = 0.0,
    **kw: Any,
) -> GradingNet:
    """Build a grading network by name; ``kw`` are architecture options of that family.

    smallcnn: ``channels`` (16, 32, 64, 128), ``strides`` (2, 2, 2, 1), ``norm`` ("batch"|"instance"),
    ``merge_stage`` (0: off; k: top-down path to stage k's grid, a finer CAM), ``merge_width`` (64).
    unet (``segment.SegmentThenGrade``: segment, then grade from the lesion's make-up; trains only with
    ``lesion_loss``): ``channels`` (16, 32, 64, 128), ``strides`` (2, 2, 2), ``num_res_units`` (1), ``norm``.
    resnetN: ``shortcut_type`` ("A"|"B"), ``bias_downsample`` (defaults: MONAI/MedicalNet's),
    ``conv1_t_stride`` (2). densenet121 / efficientnet-b0: ``norm``. Every family but unet: ``lesion_gate``
    (``LesionGate``: pool over the predicted lesion) and, with it, ``tissue_width`` (a shallow tissue path
    pooled under the gate). Nothing is ever downloaded.
    """
    key = name.lower()
    if key not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    if in_channels < 1 or num_classes < 1:
        raise ConfigError(
            f"{name}: in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}"
        )
    if spatial_dims not in (2, 3):
        raise ConfigError(f"{name}: spatial_dims must be 2 or 3, got {spatial_dims}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{name}: dropout must be in [0, 1), got {dropout}")
    builder = _BUILDERS[key]
    gated, tissue = _gate_options(name, kw)
    allowed = [p for p in inspect.signature(builder).parameters][4:]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {unknown}; this network takes {allowed + list(GATE_OPTIONS)}")
    features, n_feat, head, arch = builder(key, in_channels, num_classes, spatial_dims, **kw)
    if gated:
        features = LesionGate(features, n_feat, spatial_dims, in_channels=in_channels, tissue_width=tissue)
        arch = {**arch, "lesion_gate": True} | ({"tissue_width": tissue} if tissue else {})
        if tissue:
            n_feat, head = tissue, None  # the head pools the tissue path's maps
    return GradingNet(
        features,
        n_feat,
        num_classes,
        name=key,
        in_channels=in_channels,
        spatial_dims=spatial_dims,
        dropout=dropout,
        classifier=head,
        arch=arch,
    )


_Built = tuple[nn.Module, int, "nn.Linear | None", dict[str, Any]]


def _gate_options(name: str, kw: dict[str, Any]) -> tuple[bool, int]:
    """Pop and check ``lesion_gate`` (bool) and ``tissue_width`` (int >= 0, only with the gate)."""
    gated, tissue = kw.pop("lesion_gate", False), kw.pop("tissue_width", 0)
    if not isinstance(gated, bool):
        raise ConfigError(f"{name}: lesion_gate must be true or false, got {gated!r}")
    if isinstance(tissue, bool) or not isinstance(tissue, int) or tissue < 0:
        raise ConfigError(f"{name}: tissue_width must be an integer >= 0, got {tissue!r}")
    if tissue and not gated:
        raise ConfigError(f"{name}: tissue_width {tissue} needs lesion_gate: true (the tissue path pools under the gate)")
    if gated and name.lower() == "unet":
        raise ConfigError("unet segments the lesion itself and grades from it: lesion_gate and tissue_width do not "
                          "apply (drop them, or choose another network)")
    return gated, tissue


class LesionGate(nn.Module):
    """A trunk whose feature maps are re-weighted by a lesion gate, so the head pools over the lesion.

    ``gate = sigmoid(conv1x1(fmap))`` is trained by a segmentation loss (``TrainConfig.lesion_loss``: each
    cell's lesion fraction) and enters the pooling *detached*: it learns where the tumour + oedema is,
    never where the classifier would like to look. The output ``fmap * gate / mean(gate)`` keeps
    GAP + linear exact (GAP of it is the gate-weighted mean of the trunk's features), so the CAM of the
    output is exact, equals Grad-CAM at ``features``, and is ~0 outside the lesion by construction.

    ``tissue_width`` > 0 adds a *tissue path*: a shallow conv (3^3 stride 2, then 1^3, ``tissue_width``
    channels at 1/2 of the input grid) whose maps, times the upsampled gate, replace the trunk's. The
    trunk then only finds the lesion and the classifier reads what the lesion's voxels look like, on a
    finer CAM grid. Not normalised by the gate's mean: GAP is then "how much of the grid is lesion with
    this property" (e.g. enhancing volume), and extent is grade evidence (measured: training.md, round 6).
    """

    def __init__(self, trunk: nn.Module, channels: int, spatial_dims: int, *, in_channels: int = 0,
                 tissue_width: int = 0) -> None:
        super().__init__()
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.trunk = trunk
        self.gate = conv(channels, 1, kernel_size=1)
        self.tissue: nn.Module | None = None
        if tissue_width > 0:
            norm = nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d
            self.tissue = nn.Sequential(
                conv(in_channels, tissue_width, kernel_size=3, stride=2, padding=1), norm(tissue_width), nn.ReLU(),
                conv(tissue_width, tissue_width, kernel_size=1), norm(tissue_width), nn.ReLU(),
            )

    def forward_with_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gated feature maps and the gate's logits (the segmentation loss's input)."""
        fmap = self.trunk(x)
        logits = self.gate(fmap)
        if self.tissue is not None:  # the lesion's share of the grid stays in: extent is evidence
            fmap = self.tissue(x)
            mode = "trilinear" if x.ndim == 5 else "bilinear"
            up = nn.functional.interpolate(logits.detach(), size=fmap.shape[2:], mode=mode, align_corners=False)
            return fmap * torch.sigmoid(up), logits
        weight = torch.sigmoid(logits.detach())
        weight = weight / (weight.mean(dim=tuple(range(2, weight.ndim)), keepdim=True) + 1e-6)
        return fmap * weight, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_logits(x)[0]


class TopDownTrunk(nn.Module):
    """Conv stages whose deepest output is upsampled to an earlier stage's grid and merged with it.

    ``out = ReLU(norm(top(up(deep)) + lateral(stage_k)))``, as in a feature pyramid's top-down path:
    context from the deep stages, resolution from stage ``k``. The head still pools this map (GAP +
    linear), so the CAM stays exact, on a finer grid than the deepest stage's.
    """

    def __init__(self, stages: nn.Sequential, merge_stage: int, lateral_in: int, deep_in: int, width: int,
                 spatial_dims: int, norm: str) -> None:
        super().__init__()
        from monai.networks.layers.factories import Norm

        self.stages = stages
        self.merge_stage = merge_stage
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.lateral = conv(lateral_in, width, kernel_size=1)
        self.top = conv(deep_in, width, kernel_size=1)
        self.norm = Norm[norm, spatial_dims](width)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = x
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i + 1 == self.merge_stage:
                fine = x
        mode = "trilinear" if x.ndim == 5 else "bilinear"
        up = nn.functional.interpolate(self.top(x), size=fine.shape[2:], mode=mode, align_corners=False)
        return self.act(self.norm(up + self.lateral(fine)))


def _smallcnn(
    name: str,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    channels: tuple[int, ...] | list[int] = (16, 32, 64, 128),
    strides: tuple[int, ...] | list[int] = (2, 2, 2, 1),
    norm: str = "batch",
    merge_stage: int = 0,
    merge_width: int = 64,
    per_sequence: bool = False,
) -> _Built:
    """Four stages of [conv3-norm-ReLU (strided)] + [conv3-norm-ReLU]: 0.15 s per batch-8 4x48^3 train
    step on 2 CPU cores; the last stage keeps its resolution so the CAM grid is 1/8 of the input.
    ``merge_stage`` k > 0 adds a top-down path (``TopDownTrunk``) to stage k's grid (k = 1: 1/2).
    ``per_sequence``: one encoder per input sequence (grouped convolutions), ``channels`` wide each, fused
    only by the linear head: the logit and the CAM are sums of per-sequence terms, and a one-sequence
    model is exactly one of the encoders of the four-sequence model (a like-for-like ablation)."""
    from monai.networks.blocks import Convolution

    if len(channels) != len(strides):
        raise ConfigError(
            f"smallcnn: {len(channels)} channels but {len(strides)} strides; give one per stage"
        )
    if isinstance(merge_stage, bool) or not isinstance(merge_stage, int) or not 0 <= merge_stage < len(channels):
        raise ConfigError(f"smallcnn: merge_stage must be 0 (off) or a stage in 1..{len(channels) - 1}, "
                          f"got {merge_stage!r}")
    if merge_stage and (isinstance(merge_width, bool) or not isinstance(merge_width, int) or merge_width < 1):
        raise ConfigError(f"smallcnn: merge_width must be a positive integer, got {merge_width!r}")
    groups = _groups(in_channels, per_sequence)
    if merge_stage and groups > 1:
        raise ConfigError("smallcnn: per_sequence and merge_stage cannot be combined (the top-down path would "
                          "mix the sequences' features, and the per-sequence logit shares would be wrong)")
    stages: list[tuple[str, nn.Module]] = []
    prev = in_channels
    for i, (width, st) in enumerate(zip(channels, strides, strict=True)):
        ch = width * groups
        block = nn.Sequential(
            Convolution(spatial_dims, prev, ch, strides=st, kernel_size=3, act="relu", norm=norm, groups=groups),
            Convolution(spatial_dims, ch, ch, strides=1, kernel_size=3, act="relu", norm=norm, groups=groups),
        )
        stages.append((f"stage{i + 1}", block))
        prev = ch
    arch: dict[str, Any] = {"channels": list(channels), "strides": list(strides), "norm": norm}
    if per_sequence:
        arch["per_sequence"] = True
    trunk = nn.Sequential(OrderedDict(stages))
    if merge_stage:
        arch |= {"merge_stage": merge_stage, "merge_width": merge_width}
        top = TopDownTrunk(trunk, merge_stage, channels[merge_stage - 1], prev, merge_width, spatial_dims, norm)
        return top, merge_width, None, arch
    return trunk, prev, None, arch


def _groups(in_channels: int, per_sequence: bool) -> int:
    """Convolution groups: one per input sequence when ``per_sequence``."""
    if not isinstance(per_sequence, bool):
        raise ConfigError(f"smallcnn: per_sequence must be true or false, got {per_sequence!r}")
    return in_channels if per_sequence else 1


def _densenet121(
    name: str, in_channels: int, num_classes: int, spatial_dims: int, norm: Any = "batch"
) -> _Built:
    """MONAI DenseNet121; the trunk is its ``features`` plus ``class_layers.relu``."""
    from monai.networks.nets import DenseNet121

    net = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, norm=norm)
    trunk = nn.Sequential(OrderedDict([*net.features.named_children(), ("relu", net.class_layers.relu)]))
    head = net.class_layers.out
    return trunk, head.in_features, head, {"norm": norm} if norm != "batch" else {}


def _resnet(
    name: str,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    shortcut_type: str | None = None,
    bias_downsample: bool | None = None,
    conv1_t_stride: int = 2,
) -> _Built:
    """MONAI ResNet with MedicalNet's conventions (7^3 stride-2 stem); trunk up to ``layer4``."""
    from monai.networks.nets import ResNet

    block, layers, default_shortcut, default_bias = _RESNET_ARCH[name]
    shortcut = shortcut_type or default_shortcut
    bias = default_bias if bias_downsample is None else bias_downsample
    net = ResNet(
        block,
        layers,
        [64, 128, 256, 512],
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_stride=conv1_t_stride,
        shortcut_type=shortcut,
        bias_downsample=bias,
        num_classes=num_classes,
    )
    trunk = nn.Sequential(OrderedDict((k, getattr(net, k)) for k in _RESNET_TRUNK))
    arch = {"shortcut_type": shortcut, "bias_downsample": bias, "conv1_t_stride": conv1_t_stride}
    return trunk, net.fc.in_features, net.fc, arch


def _efficientnet(
    name: str, in_channels: int, num_classes: int, spatial_dims: int, norm: Any = None
) -> _Built:
    """MONAI EfficientNetBN-b0 (never pretrained); plain Swish so the graph exports to ONNX."""
    from monai.networks.layers.factories import Act
    from monai.networks.nets import EfficientNetBN

    kwargs = {"norm": norm} if norm is not None else {}
    net = EfficientNetBN(
        name,
        pretrained=False,
        progress=False,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        **kwargs,
    )
    net.set_swish(memory_efficient=False)
    parts = [
        "_conv_stem_padding",
        "_conv_stem",
        "_bn0",
        "_swish0",
        "_blocks",
        "_conv_head_padding",
        "_conv_head",
        "_bn1",
        "_swish",
    ]
    modules = {k: (Act["swish"](alpha=1.0) if k == "_swish0" else getattr(net, k)) for k in parts}
    trunk = nn.Sequential(OrderedDict((k, modules[k]) for k in parts))
    return trunk, net._fc.in_features, net._fc, {"norm": norm} if norm is not None else {}


def _unet(
    name: str,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    channels: tuple[int, ...] | list[int] = (16, 32, 64, 128),
    strides: tuple[int, ...] | list[int] = (2, 2, 2),
    num_res_units: int = 1,
    norm: str = "batch",
) -> _Built:
    """MONAI U-Net that segments ``TISSUE_CLASSES``; the head reads their amounts and lesion fractions
    (``SegmentThenGrade``). ~7 min per quick-profile fold on 2 CPU cores (the tissue path: ~4)."""
    if len(strides) != len(channels) - 1:
        raise ConfigError(f"unet: {len(channels)} channels need {len(channels) - 1} strides, got {len(strides)}")
    if isinstance(num_res_units, bool) or not isinstance(num_res_units, int) or num_res_units < 0:
        raise ConfigError(f"unet: num_res_units must be an integer >= 0, got {num_res_units!r}")
    features = SegmentThenGrade(in_channels, spatial_dims, tuple(channels), tuple(strides), num_res_units, norm)
    arch = {"channels": list(channels), "strides": list(strides), "num_res_units": num_res_units, "norm": norm}
    return features, 2 * len(TISSUE_CLASSES), None, arch


_BUILDERS: dict[str, Callable[..., _Built]] = {
    "smallcnn": _smallcnn,
    "densenet121": _densenet121,
    **{k: _resnet for k in _RESNET_ARCH},
    "efficientnet-b0": _efficientnet,
    "unet": _unet,
}


def to_monai_key(name: str, key: str) -> str:
    """Map a ``GradingNet`` state-dict key to the plain MONAI network's key (e.g. for ``densenet121``
    ``classifier.weight`` -> ``class_layers.out.weight``; for ``resnet18`` ``features.layer1...`` ->
    ``layer1...``)."""
    heads = {"densenet121": "class_layers.out.", "efficientnet-b0": "_fc."}
    head = heads.get(name, "fc.")
    if name in ("smallcnn", "unet"):
        raise ConfigError(f"{name} is our own grading network; it has no MONAI classifier counterpart")
    if key.startswith("classifier."):
        return head + key[len("classifier.") :]
    if key.startswith("features.trunk."):  # a lesion-gated net: the trunk is MONAI's
        key = "features." + key[len("features.trunk.") :]
    if name == "densenet121":
        return key
    return key[len("features.") :] if key.startswith("features.") else key


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
