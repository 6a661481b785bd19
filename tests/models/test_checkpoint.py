"""Checkpoints: bit-exact safetensors round trip, metadata checks, pickle-free resume state."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagrade.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
    save_train_state,
)
from gliomagrade.models import build_model


def _trained_a_bit(name: str = "smallcnn", **kw: object) -> torch.nn.Module:
    """A model whose BN running stats and weights moved away from their initial values."""
    torch.manual_seed(0)
    model = build_model(name, 2, 3, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(4, 2, 16, 16, 16)).logsumexp(1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return model.eval()


@pytest.mark.parametrize("name,kw", [("smallcnn", {"norm": "instance"}), ("resnet10", {"shortcut_type": "A"}),
                                     ("smallcnn", {"channels": (4, 4, 8, 8), "per_sequence": True})])
def test_round_trip_is_bit_exact(tmp_path: Path, name: str, kw: dict) -> None:
    model = _trained_a_bit(name, **kw)
    meta = {"sequences": ["t1ce", "flair"], "class_names": ["a", "b", "c"], "temperature": 1.3, "grid": [16, 16, 16]}
    save_checkpoint(tmp_path / "ck", model, meta)
    loaded, got = load_checkpoint(tmp_path / "ck")
    assert not loaded.training
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2), k1
    x = torch.randn(2, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert got["temperature"] == 1.3 and got["name"] == name and got["arch"] == model.arch
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["meta.json", "model.safetensors"]


def test_meta_inconsistent_with_model_is_refused(tmp_path: Path) -> None:
    model = build_model("smallcnn", 4, 2)
    with pytest.raises(CheckpointError, match="2 sequences"):
        save_checkpoint(tmp_path, model, {"sequences": ["t1", "t2"]})
    with pytest.raises(CheckpointError, match="contradicts"):
        save_checkpoint(tmp_path, model, {"num_classes": 3})


def test_weights_not_matching_meta_are_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, build_model("smallcnn", 4, 2), {})
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["arch"]["channels"] = [8, 16, 32, 64]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path)


def test_corrupt_weights_name_the_file(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, build_model("smallcnn", 1, 2), {})
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path)


class _Evil:
    """Unpickling this would call os.system: weights_only must refuse it."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def test_pickle_bearing_train_state_is_refused(tmp_path: Path) -> None:
    model = build_model("smallcnn", 1, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    bad = tmp_path / "state.pt"
    torch.save({"format_version": 1, "model": model.state_dict(), "payload": _Evil()}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        load_train_state(bad, model, opt)


def test_resume_restores_model_optimizer_scheduler_and_rng(tmp_path: Path) -> None:
    def step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: object) -> torch.Tensor:
        x = torch.randn(2, 1, 16, 16, 16)  # drawn from the RNG: resuming must give the same draw
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()  # type: ignore[attr-defined]
        return loss.detach()

    torch.manual_seed(1)
    model = build_model("smallcnn", 1, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    step(model, opt, sched)
    save_train_state(tmp_path / "s.pt", model, opt, sched, epoch=1, extra={"best_auc": 0.7})
    expected = step(model, opt, sched), random.random(), np.random.rand()

    model2 = build_model("smallcnn", 1, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=5)
    info = load_train_state(tmp_path / "s.pt", model2, opt2, sched2)
    assert info == {"epoch": 1, "extra": {"best_auc": 0.7}}
    got = step(model2, opt2, sched2), random.random(), np.random.rand()
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]
    assert sched2.last_epoch == sched.last_epoch
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
