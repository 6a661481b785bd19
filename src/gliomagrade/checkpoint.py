"""Model checkpoints without pickle: safetensors weights + JSON metadata, and a resumable train state.

A *model* checkpoint is a directory holding ``model.safetensors`` (the state dict) and ``meta.json``
(architecture: ``name``, ``in_channels``, ``num_classes``, ``arch``...; plus what the caller adds:
``sequences``, ``class_names``, ``temperature``, ``threshold``, ``grid``, metrics). Loading it rebuilds
the network with ``build_model`` and loads the weights strictly.

A *train state* (resume after preemption) is one ``torch.save`` file of tensors and primitive
containers only (model, optimizer, scheduler, epoch, RNG states); it is read with
``torch.load(weights_only=True)``, which refuses any pickled object that is not plain data.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gliomagrade import __version__
from gliomagrade.errors import GliomaError
from gliomagrade.models import GradingNet, build_model

WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
FORMAT_VERSION = 1
_ARCH_KEYS = ("name", "in_channels", "num_classes", "spatial_dims", "dropout", "feature_channels", "arch")


class CheckpointError(GliomaError):
    """A checkpoint is missing, unreadable, inconsistent or holds something other than plain data."""


def save_checkpoint(path: str | Path, model: GradingNet, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` + ``meta.json`` into directory ``path``; return the directory."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    user = dict(meta or {})
    clash = {k: (user[k], v) for k, v in model.config().items() if k in user and user[k] != v}
    if clash:
        raise CheckpointError(f"{out}: meta contradicts the model (meta vs model): {clash}")
    _check_meta(user, model, out)
    full = {**user, **model.config(), "format_version": FORMAT_VERSION, "gliomagrade_version": __version__}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic_write(out / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"name": model.name}))
    _atomic_write(out / META_FILE, lambda p: p.write_text(json.dumps(full, indent=2, sort_keys=True)))
    return out


def _check_meta(meta: dict[str, Any], model: GradingNet, where: Path) -> None:
    """Refuse metadata that disagrees with the network (channel count, class count)."""
    seqs = meta.get("sequences")
    if seqs is not None and len(seqs) != model.in_channels:
        raise CheckpointError(
            f"{where}: {len(seqs)} sequences {list(seqs)} but the model has {model.in_channels} input channels"
        )
    names = meta.get("class_names")
    if names is not None and len(names) != model.num_classes:
        raise CheckpointError(
            f"{where}: {len(names)} class_names {list(names)} but the model has {model.num_classes} outputs"
        )


def _atomic_write(target: Path, write: Any) -> None:
    """Write through a temporary sibling then rename, so a crash never leaves half a file."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, target)


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and validate ``meta.json`` of a checkpoint directory."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{meta_path}: checkpoint metadata not found")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from exc
    missing = [k for k in _ARCH_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{meta_path}: missing keys {missing}")
    return meta


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[GradingNet, dict[str, Any]]:
    """Rebuild the network from ``meta.json``, load ``model.safetensors`` strictly; return it in eval mode."""
    path = Path(path)
    meta = read_meta(path)
    model = build_model(
        meta["name"],
        int(meta["in_channels"]),
        int(meta["num_classes"]),
        spatial_dims=int(meta["spatial_dims"]),
        dropout=float(meta["dropout"]),
        **meta["arch"],
    )
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found")
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from exc
    _load_strict(model, state, str(weights))
    return model.to(map_location).eval(), meta


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error naming the file and the differing keys."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise CheckpointError(f"{source}: state dict does not match the architecture: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: state dict does not match the architecture; missing {result.missing_keys[:10]} "
            f"({len(result.missing_keys)}), unexpected {result.unexpected_keys[:10]} ({len(result.unexpected_keys)})"
        )


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and primitives (weights_only-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    nps = state["numpy"]
    keys = nps["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, nps["pos"], nps["has_gauss"], nps["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    epoch: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save everything needed to resume training after ``epoch`` (atomically)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, lambda p: torch.save(payload, p))
    return target


def load_train_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    restore_rng: bool = True,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a train state into ``model``/``optimizer``/``scheduler``; return ``{"epoch", "extra"}``.

    Uses ``torch.load(weights_only=True)``: a file carrying arbitrary pickled objects is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: train state not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError for forbidden globals
        raise CheckpointError(
            f"{path}: refused to load (not plain tensors/containers, or corrupt): {exc}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: not a gliomagrade train state (format_version {FORMAT_VERSION} expected)"
        )
    _load_strict(model, payload["model"], str(path))
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        set_rng_state(payload["rng"])
    return {"epoch": int(payload["epoch"]), "extra": payload["extra"]}
