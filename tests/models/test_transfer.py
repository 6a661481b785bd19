"""Transfer learning from local files: MedicalNet 3-D ResNets and torchvision 2-D ResNet/DenseNet.

torchvision is not installed: the "torchvision" state dicts are made by 2-D MONAI networks whose
parameter names are torchvision's (ResNet: identical; DenseNet: ``.layers.`` removed, as below).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from monai.networks import nets

from gliomagrade.models import build_model
from gliomagrade.transfer import (
    TransferError,
    build_pretrained,
    inflate_kernel,
    load_pretrained,
    torchvision_to_monai_key,
)


def _randomise_bn(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters, so a key that is not copied shows."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


def _resnet2d() -> torch.nn.Module:
    """A torchvision-style 2-D ResNet (basic blocks, conv shortcut without bias, 1000-class fc)."""
    torch.manual_seed(0)
    net = nets.ResNet("basic", [1, 1, 1, 1], [64, 128, 256, 512], spatial_dims=2, n_input_channels=3,
                      conv1_t_size=7, conv1_t_stride=2, shortcut_type="B", bias_downsample=False, num_classes=1000)
    return _randomise_bn(net, 0)


def _trunk2d(net: torch.nn.Module, upto: str = "layer4") -> torch.nn.Sequential:
    names = ["conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return torch.nn.Sequential(*[getattr(net, n) for n in names[: names.index(upto) + 1]])


def test_torchvision_resnet_names_and_center_inflation_is_exact_on_depth_constant_volumes() -> None:
    net2d = _resnet2d()
    state = net2d.state_dict()
    assert {"conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "fc.weight"} <= set(state)
    model, report = build_pretrained("resnet10", 4, 2, _save(state), inflate="center")
    assert report.source == "torchvision-resnet" and report.ok
    assert report.ignored == ["fc.weight", "fc.bias"] and "features.conv1.weight" in report.adapted
    g = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = _trunk2d(net2d)(g.repeat(1, 3, 1, 1))  # grey image in RGB
        got = model.eval().features(g.unsqueeze(2).repeat(1, 4, 32, 1, 1))  # same slice, 4 equal channels, D=32
    assert got.shape[2] == 1 and expected.abs().max() > 0
    for d in range(got.shape[2]):
        torch.testing.assert_close(got[:, :, d], expected, rtol=1e-4, atol=1e-4)


def test_mean_inflation_keeps_the_2d_response_away_from_the_depth_borders() -> None:
    net2d = _resnet2d()
    model = build_model("resnet10", 3, 2)
    report = load_pretrained(model, net2d.state_dict())  # I3D default: repeat along depth / depth
    assert report.ok and report.adapted.count("features.conv1.weight") == 1
    g = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = _trunk2d(net2d, "layer1")(g)
        got = model.eval().features[:5](g.unsqueeze(2).repeat(1, 1, 64, 1, 1))
    assert got.shape[2] == 16
    # zero padding in depth perturbs the 4 outer slices at each end (stem, pool, two 3^3 convs)
    for d in range(4, 12):
        torch.testing.assert_close(got[:, :, d], expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got[:, :, 0], expected, atol=1e-3)


def test_inflate_kernel_modes() -> None:
    w = torch.randn(2, 3, 3, 3)
    mean, center = inflate_kernel(w, 5, "mean"), inflate_kernel(w, 5, "center")
    assert mean.shape == center.shape == (2, 3, 5, 3, 3)
    torch.testing.assert_close(mean.sum(2), w)
    torch.testing.assert_close(center.sum(2), w)
    assert torch.count_nonzero(center[:, :, [0, 1, 3, 4]]) == 0


def _tv_densenet_key(monai_key: str) -> str:
    """MONAI -> torchvision DenseNet naming (the inverse of ``torchvision_to_monai_key``)."""
    return re.sub(r"(denselayer\d+)\.layers\.", r"\1.", monai_key).replace("class_layers.out.", "classifier.")


def test_torchvision_densenet_key_mapping_and_inflation() -> None:
    torch.manual_seed(0)
    net2d = _randomise_bn(nets.DenseNet121(spatial_dims=2, in_channels=3, out_channels=1000), 1)
    state = {_tv_densenet_key(k): v for k, v in net2d.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm1.weight" in state and "classifier.weight" in state
    assert torchvision_to_monai_key("features.denseblock2.denselayer3.norm.1.weight") == (
        "features.denseblock2.denselayer3.layers.norm1.weight"  # pre-0.4 torchvision checkpoints
    )
    model = build_model("densenet121", 2, 2)
    report = load_pretrained(model, state, inflate="center")
    assert report.source == "torchvision-densenet" and report.ok and report.ignored == ["classifier.weight", "classifier.bias"]
    g = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = torch.relu(net2d.features(g.repeat(1, 3, 1, 1)))
        got = model.eval().features(g.unsqueeze(2).repeat(1, 2, 32, 1, 1))
    torch.testing.assert_close(got[:, :, 0], expected, rtol=1e-4, atol=1e-4)


def _save(state: dict[str, torch.Tensor], tmp: Path | None = None, wrap: bool = False) -> Path:
    import tempfile

    path = (tmp or Path(tempfile.mkdtemp())) / "weights.pth"
    torch.save({"state_dict": state} if wrap else state, path)
    return path


def _medicalnet_resnet10() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A MedicalNet-shaped resnet_10: 1-channel 7^3 stem, DataParallel ``module.`` prefix, seg head."""
    torch.manual_seed(0)
    net = nets.resnet10(spatial_dims=3, n_input_channels=1, conv1_t_stride=2, shortcut_type="B",
                        bias_downsample=False, feed_forward=False)
    state = {f"module.{k}": v for k, v in _randomise_bn(net, 2).state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.randn(32, 512, 3, 3, 3)
    return net, state


def test_medicalnet_checkpoint_loads_with_adapted_stem(tmp_path: Path) -> None:
    net3d, state = _medicalnet_resnet10()
    model, report = build_pretrained("resnet10", 4, 2, _save(state, tmp_path, wrap=True))
    assert report.source == "medicalnet" and report.ok
    assert report.ignored == ["module.conv_seg.0.weight"] and report.adapted == ["features.conv1.weight"]
    g = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        expected = _trunk2d(net3d)(g)
        got = model.eval().features(g.repeat(1, 4, 1, 1, 1))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # a lesion-gated net takes the same file: the trunk sits under features.trunk, the gate starts fresh
    gated, report = build_pretrained("resnet10", 4, 2, _save(state, tmp_path, wrap=True), lesion_gate=True)
    assert report.ok and report.adapted == ["features.trunk.conv1.weight"] and not report.missing
    with torch.no_grad():
        torch.testing.assert_close(gated.eval().features.trunk(g.repeat(1, 4, 1, 1, 1)), expected, rtol=1e-4, atol=1e-5)
    # with a tissue path too: it and the head start fresh, the trunk is the checkpoint's
    tissue, report = build_pretrained("resnet10", 4, 2, _save(state, tmp_path, wrap=True), lesion_gate=True,
                                      tissue_width=4)
    assert report.ok and report.adapted == ["features.trunk.conv1.weight"] and not report.missing
    assert tissue.classifier.in_features == 4


def test_mismatched_architecture_is_loud(tmp_path: Path) -> None:
    _, state = _medicalnet_resnet10()
    model = build_model("resnet10", 4, 2, shortcut_type="A")  # no conv shortcut: downsample keys have no home
    with pytest.raises(TransferError, match=r"unexpected \['module.layer2.0.downsample.0.weight'.*shortcut_type': 'B'"):
        load_pretrained(model, state)
    report = load_pretrained(model, state, strict=False)
    assert report.unexpected and not report.missing and len(report.loaded) > 20
    with pytest.raises(TransferError, match="ResNet weights"):
        load_pretrained(build_model("densenet121", 4, 2), state)
    with pytest.raises(TransferError, match="no pretrained weights exist for smallcnn"):
        load_pretrained(build_model("smallcnn", 4, 2), state)
    with pytest.raises(TransferError, match="never downloaded"):
        build_pretrained("resnet10", 4, 2, tmp_path / "resnet_10_23dataset.pth")
