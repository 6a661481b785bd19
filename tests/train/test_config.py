"""Profiles: the shipped ones build their networks; overriding the network drops the old one's options but
not the lesion gate's."""

from __future__ import annotations

import pytest

from gliomagrade.config import PROFILES, load_profile
from gliomagrade.errors import ConfigError
from gliomagrade.models import build_model


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profiles_build_their_network(name: str) -> None:
    cfg = load_profile(name).train
    model = build_model(cfg.model, len(cfg.sequences), 2, dropout=cfg.dropout, **cfg.model_kwargs)
    assert model.config()["in_channels"] == 4


def test_a_new_model_drops_the_profile_architecture_options() -> None:
    quick = load_profile("quick").with_overrides(train={"model_kwargs": {"channels": [8, 16, 32, 64],
                                                                         "per_sequence": True}})
    other = quick.with_overrides(train={"model": "resnet10"}).train
    assert other.model == "resnet10" and other.model_kwargs == {"lesion_gate": True, "tissue_width": 32}
    build_model(other.model, 4, 2, **other.model_kwargs)
    same = quick.with_overrides(train={"model": "smallcnn", "epochs": 3}).train
    assert same.model_kwargs == quick.train.model_kwargs and same.epochs == 3
    explicit = quick.with_overrides(train={"model": "resnet10", "model_kwargs": {"shortcut_type": "A"}}).train
    assert explicit.model_kwargs == {"shortcut_type": "A", "lesion_gate": True, "tissue_width": 32}


def test_a_profile_file_can_start_from_a_built_in_one(tmp_path) -> None:
    path = tmp_path / "variant.yaml"
    path.write_text("base: quick\ntrain:\n  model_kwargs: {channels: [8, 16, 32, 64], per_sequence: true}\n"
                    "  sequence_loss: 1.0\n")
    variant, quick = load_profile(path), load_profile("quick")
    assert variant.name == "variant" and variant.train.sequence_loss == 1.0
    assert variant.train.model_kwargs == {"channels": [8, 16, 32, 64], "per_sequence": True, "lesion_gate": True,
                                          "tissue_width": 32}
    assert variant.train.epochs == quick.train.epochs and variant.preprocess == quick.preprocess
    assert variant.gate == quick.gate
    (tmp_path / "bad.yaml").write_text("base: quick\ntrain: 3\n")
    with pytest.raises(ConfigError, match="must be mappings"):
        load_profile(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("base: quick\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="epoch"):
        load_profile(tmp_path / "typo.yaml")


def test_a_base_file_is_found_beside_the_profile_and_a_cycle_is_named(tmp_path, monkeypatch) -> None:
    (tmp_path / "short.yaml").write_text("base: quick\ntrain:\n  epochs: 7\n")
    (tmp_path / "shorter.yaml").write_text("base: short.yaml\ntrain:\n  patience: 3\n")
    monkeypatch.chdir("/")  # the base is resolved next to the file, not in the working directory
    derived = load_profile(tmp_path / "shorter.yaml").train
    assert (derived.epochs, derived.patience) == (7, 3)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: ./a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_profile(tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_profile(tmp_path / "self.yaml")
    (tmp_path / "nobase.yaml").write_text("base: 3\n")
    with pytest.raises(ConfigError, match="base must name"):
        load_profile(tmp_path / "nobase.yaml")


def test_lesion_gate_and_lesion_loss_come_together() -> None:
    quick = load_profile("quick")
    assert quick.train.model_kwargs["lesion_gate"] is True and quick.train.lesion_loss > 0
    plain = quick.with_overrides(train={"model_kwargs": {"lesion_gate": False}, "lesion_loss": 0.0})
    with pytest.raises(ConfigError, match="lesion_gate: true needs lesion_loss > 0"):
        plain.with_overrides(train={"model_kwargs": {"lesion_gate": True}})
    with pytest.raises(ConfigError, match="lesion_loss 1.0 needs model_kwargs.lesion_gate: true"):
        plain.with_overrides(train={"lesion_loss": 1.0})
    # another network keeps the gate and its tissue path (every family takes them), not the other options
    gated = quick.with_overrides(train={"model_kwargs": {"channels": [8, 16, 32], "strides": [2, 2, 1]}})
    assert gated.train.model_kwargs == {"channels": [8, 16, 32], "strides": [2, 2, 1], "lesion_gate": True,
                                        "tissue_width": 32}, "new architecture options keep the gate's"
    other = gated.with_overrides(train={"model": "resnet10"})
    assert other.train.model_kwargs == {"lesion_gate": True, "tissue_width": 32}
    assert build_model("resnet10", 4, 2, **other.train.model_kwargs).lesion_gated
    # options that name the gate replace the old ones
    assert quick.with_overrides(train={"model_kwargs": {"lesion_gate": True}}).train.model_kwargs == {
        "lesion_gate": True}
    with pytest.raises(ConfigError, match="tissue_width 16 needs model_kwargs.lesion_gate: true"):
        quick.with_overrides(train={"model_kwargs": {"tissue_width": 16}})


def test_unet_drops_the_gate_options_and_needs_the_segmentation_loss() -> None:
    quick = load_profile("quick")
    unet = quick.with_overrides(train={"model": "unet"})
    assert unet.train.model_kwargs == {} and unet.train.lesion_loss == quick.train.lesion_loss
    assert build_model("unet", 4, 2, **unet.train.model_kwargs).lesion_gated
    plain = quick.with_overrides(train={"model_kwargs": {"lesion_gate": False}, "lesion_loss": 0.0})
    assert plain.with_overrides(train={"model": "unet"}).train.lesion_loss == 1.0, "a profile without one gets 1.0"
    with pytest.raises(ConfigError, match="unet needs lesion_loss > 0"):
        unet.with_overrides(train={"lesion_loss": 0.0})
    with pytest.raises(ConfigError, match="unet segments the lesion itself"):
        unet.with_overrides(train={"model_kwargs": {"lesion_gate": True}})
