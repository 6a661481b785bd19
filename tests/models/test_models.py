"""Networks: every name builds, shapes are right, and each wrapper computes exactly MONAI's network."""

from __future__ import annotations

import pytest
import torch
from monai.networks import nets

from gliomagrade.errors import ConfigError
from gliomagrade.models import MODEL_NAMES, GradingNet, build_model, to_monai_key

GRID = (32, 32, 32)  # DenseNet121 needs >= 32 (five 2x downsamplings)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_builds_and_returns_logits_and_features(name: str) -> None:
    # every channel count for the quick net, fewer for the big ones (building resnet34 costs seconds)
    channels = {"smallcnn": (1, 2, 3, 4), "resnet10": (1, 4), "efficientnet-b0": (1, 4)}.get(name, (4,))
    for in_channels in channels:
        model = build_model(name, in_channels, 3).eval()
        assert isinstance(model, GradingNet)
        assert (model.name, model.in_channels, model.num_classes) == (name, in_channels, 3)
        assert isinstance(model.classifier, torch.nn.Linear)
        assert model.classifier.weight.shape == (3, model.feature_channels)
        x = torch.randn(2, in_channels, *GRID)[: 2 if name == "smallcnn" else 1]
        with torch.no_grad():
            logits, fmap = model.forward_with_features(x)
            assert torch.equal(logits, model(x))
        assert logits.shape == (len(x), 3)
        assert fmap.ndim == 5 and fmap.shape[:2] == (len(x), model.feature_channels)
        floor = -0.279 if name == "efficientnet-b0" else 0.0  # trunk ends with its activation: Swish or ReLU
        assert fmap.min() >= floor
        # the head is exactly GAP + linear over the returned feature maps
        manual = fmap.mean(dim=(2, 3, 4)) @ model.classifier.weight.T + model.classifier.bias
        torch.testing.assert_close(logits, manual, rtol=1e-5, atol=1e-5)


MONAI_NETS = {
    "densenet121": lambda c, k: nets.DenseNet121(spatial_dims=3, in_channels=c, out_channels=k),
    "resnet10": lambda c, k: nets.resnet10(n_input_channels=c, num_classes=k, conv1_t_stride=2,
                                           shortcut_type="B", bias_downsample=False),
    "resnet18": lambda c, k: nets.resnet18(n_input_channels=c, num_classes=k, conv1_t_stride=2, shortcut_type="A"),
    "efficientnet-b0": lambda c, k: nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=3,
                                                        in_channels=c, num_classes=k),
}


# resnet34/50 use the same key mapping as resnet18/10 (shortcut A / B); building them costs seconds
@pytest.mark.parametrize("name", sorted(MONAI_NETS))
def test_wrapper_is_monai_network_with_monai_names(name: str) -> None:
    torch.manual_seed(0)
    ours = build_model(name, 4, 2).eval()
    ref = MONAI_NETS[name](4, 2).eval()
    if name == "efficientnet-b0":
        ref.set_swish(memory_efficient=False)
        ref._dropout.p = 0.0
    mapped = {to_monai_key(name, k): v for k, v in ours.state_dict().items()}
    ref.load_state_dict(mapped, strict=True)  # every key maps one-to-one onto MONAI's names
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


def test_resnet_defaults_follow_medicalnet_conventions() -> None:
    from monai.networks.nets.resnet import resnet_params

    for name in ("resnet10", "resnet18", "resnet34", "resnet50"):
        _, layers, shortcut, bias, _ = resnet_params[name]
        model = build_model(name, 1, 2)
        assert (model.arch["shortcut_type"], model.arch["bias_downsample"]) == (shortcut, bias)
        assert len(model.features.layer3) == layers[2]


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="valid names: smallcnn, densenet121"):
        build_model("vgg16", 4, 2)


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['growth'\]; this network takes \['norm', 'lesion_gate', 'tissue_width'\]"):
        build_model("densenet121", 4, 2, growth=16)


def test_wrong_input_channels_say_found_vs_expected() -> None:
    model = build_model("smallcnn", 4, 2)
    with pytest.raises(ConfigError, match=r"shape \(1, 3, 16, 16, 16\), expected \(B, 4"):
        model(torch.randn(1, 3, 16, 16, 16))


def test_dropout_is_applied_before_the_head_only_in_training() -> None:
    model = build_model("smallcnn", 1, 2, dropout=0.5)
    x = torch.randn(2, 1, 16, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    assert isinstance(model.dropout, torch.nn.Dropout) and model.dropout.p == 0.5


def test_top_down_path_puts_the_cam_grid_on_the_merged_stage() -> None:
    """merge_stage=k: the map the head pools (and the CAM) lives on stage k's grid, not the deepest one's."""
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        assert build_model("smallcnn", 4, 2).forward_with_features(x)[1].shape == (1, 128, 4, 4, 4)
        for k, side in ((1, 16), (2, 8)):
            model = build_model("smallcnn", 4, 2, merge_stage=k, merge_width=16).eval()
            assert model.forward_with_features(x)[1].shape == (1, 16, side, side, side)
            assert model.config()["arch"]["merge_stage"] == k
    for bad in (4, -1, 1.5, True):
        with pytest.raises(ConfigError, match="merge_stage must be 0"):
            build_model("smallcnn", 4, 2, merge_stage=bad)
    with pytest.raises(ConfigError, match="merge_width must be a positive integer, got 0"):
        build_model("smallcnn", 4, 2, merge_stage=1, merge_width=0)


def test_per_sequence_encoders_keep_the_sequences_apart() -> None:
    """per_sequence: feature group k depends on input sequence k only (late fusion in the linear head),
    and a one-sequence model is one such encoder."""
    torch.manual_seed(0)
    model = build_model("smallcnn", 4, 2, channels=(4, 4, 8, 8), per_sequence=True).eval()
    assert model.config()["arch"]["per_sequence"] is True and model.config()["feature_channels"] == 32
    x = torch.randn(1, 4, 16, 16, 16)
    y = x.clone()
    y[:, 2] = torch.randn(1, 16, 16, 16)  # change t2 only
    with torch.no_grad():
        fx, fy = model.forward_with_features(x)[1], model.forward_with_features(y)[1]
    changed = [not torch.allclose(fx[:, 8 * g : 8 * g + 8], fy[:, 8 * g : 8 * g + 8]) for g in range(4)]
    assert changed == [False, False, True, False]
    single = build_model("smallcnn", 1, 2, channels=(4, 4, 8, 8), per_sequence=True)
    one = sum(p.numel() for p in single.features.parameters())
    assert one * 4 == sum(p.numel() for p in model.features.parameters())
    with pytest.raises(ConfigError, match="per_sequence must be true or false"):
        build_model("smallcnn", 4, 2, per_sequence="yes")
    with pytest.raises(ConfigError, match="per_sequence and merge_stage cannot be combined"):
        build_model("smallcnn", 4, 2, per_sequence=True, merge_stage=1)


def test_sequence_logits_are_each_encoders_share_of_the_logits() -> None:
    torch.manual_seed(1)
    model = build_model("smallcnn", 3, 2, channels=(4, 4, 8, 8), per_sequence=True).eval()
    assert model.sequence_groups == 3
    with torch.no_grad():
        logits, fmap = model.forward_with_features(torch.randn(2, 3, 16, 16, 16))
        shares = model.sequence_logits(fmap)
    bias = model.classifier.bias
    assert shares.shape == (2, 3, 2)
    torch.testing.assert_close((shares - bias).sum(dim=1) + bias, logits)
    dense = build_model("smallcnn", 3, 2, channels=(4, 4, 8, 8)).eval()
    with torch.no_grad():
        logits, fmap = dense.forward_with_features(torch.randn(2, 3, 16, 16, 16))
        torch.testing.assert_close(dense.sequence_logits(fmap)[:, 0], logits)
    assert dense.sequence_groups == 1


def test_lesion_gate_pools_the_gate_weighted_mean_and_rebuilds() -> None:
    """GAP of a gated net's features = the gate-weighted mean of its trunk's; the arch says so."""
    torch.manual_seed(0)
    model = build_model("smallcnn", 2, 2, channels=(4, 4, 8, 8), lesion_gate=True).eval()
    assert model.lesion_gated and not build_model("smallcnn", 2, 2).lesion_gated
    x = torch.randn(2, 2, 32, 32, 32)
    with torch.no_grad():
        logits, fmap, gate_logits = model.forward_with_gate(x)
        trunk = model.features.trunk(x)
    assert gate_logits.shape == (2, 1, *trunk.shape[2:])
    a = torch.sigmoid(gate_logits)
    weighted = (trunk * a).flatten(2).sum(2) / a.flatten(2).sum(2)
    torch.testing.assert_close(fmap.flatten(2).mean(2), weighted, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(logits, model(x))
    rebuilt = build_model("smallcnn", 2, 2, **model.config()["arch"])
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), logits)
    assert build_model("smallcnn", 2, 2).forward_with_gate(x)[2] is None
    with pytest.raises(ConfigError, match="lesion_gate must be true or false"):
        build_model("smallcnn", 2, 2, lesion_gate="yes")


def test_tissue_path_pools_its_maps_under_the_upsampled_gate() -> None:
    """tissue_width: the head pools a shallow path's maps at 1/2 of the input grid times the trunk's gate
    upsampled to that grid (not normalised: extent counts); the classifier is sized for it and the arch
    rebuilds it."""
    torch.manual_seed(0)
    model = build_model("resnet10", 2, 3, lesion_gate=True, tissue_width=5).eval()
    assert model.feature_channels == 5 and model.classifier.in_features == 5
    x = torch.randn(2, 2, 32, 32, 32)
    with torch.no_grad():
        logits, fmap, gate_logits = model.forward_with_gate(x)
        tissue = model.features.tissue(x)
    assert fmap.shape == (2, 5, 16, 16, 16) and gate_logits.shape[2:] == model.features.trunk(x).shape[2:]
    a = torch.sigmoid(torch.nn.functional.interpolate(gate_logits, size=(16, 16, 16), mode="trilinear"))
    torch.testing.assert_close(fmap, tissue * a, rtol=1e-4, atol=1e-6)
    rebuilt = build_model("resnet10", 2, 3, **model.config()["arch"])
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), logits)
    two_d = build_model("smallcnn", 1, 2, spatial_dims=2, channels=(4, 8), strides=(2, 2), lesion_gate=True,
                        tissue_width=3).eval()
    assert two_d.forward_with_features(torch.randn(1, 1, 16, 16))[1].shape == (1, 3, 8, 8)
    with pytest.raises(ConfigError, match="tissue_width 4 needs lesion_gate: true"):
        build_model("smallcnn", 2, 2, tissue_width=4)
    with pytest.raises(ConfigError, match="tissue_width must be an integer >= 0, got -1"):
        build_model("smallcnn", 2, 2, lesion_gate=True, tissue_width=-1)


def test_gated_trunk_keys_map_to_monai_names() -> None:
    model = build_model("resnet10", 1, 2, lesion_gate=True)
    assert to_monai_key("resnet10", "features.trunk.layer1.0.conv1.weight") == "layer1.0.conv1.weight"
    assert "features.trunk.conv1.weight" in model.state_dict() and "features.gate.weight" in model.state_dict()
