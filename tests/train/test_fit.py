"""Model behaviour through fit_fold: it learns a separable toy task, and a resumed fold equals an
uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import tiny_profile, write_cohort

from gliomagrade.checkpoint import load_checkpoint
from gliomagrade.cv import make_splits
from gliomagrade.data import Cohort, load_cohort
from gliomagrade.train import STATE_FILE, EpochRecord, fit_fold


class Interrupt(Exception):
    """Raised by a callback to simulate a crash after an epoch's state was saved."""


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return load_cohort(write_cohort(tmp_path_factory.mktemp("toy"), n=30, seed=3), progress=False)


def _history(fold_dir: Path) -> list[dict]:
    return json.loads((fold_dir / "log.json").read_text())


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "tissue-gated"])
def test_fit_fold_learns_a_separable_task(toy: Cohort, tmp_path: Path, plain: bool) -> None:
    cfg = tiny_profile(epochs=6, augment=False, plain=plain).train
    split = make_splits(toy.labels, toy.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[0]
    res = fit_fold(toy, split, cfg, tmp_path / "f0", progress=False)
    hist = _history(tmp_path / "f0")
    assert len(hist) == 6
    assert hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    assert min(h["val_loss"] for h in hist[1:]) < hist[0]["val_loss"]
    assert max(h["val_auc"] for h in hist) >= 0.9
    # the kept model is the best epoch's, and it separates the held-out test fold
    assert res.meta["best_epoch"] == int(np.argmin([h["val_loss"] for h in hist]))
    calibrated = torch.from_numpy(res.test_logits) / res.meta["temperature"]
    prob_hgg = torch.softmax(calibrated, 1)[:, 1].numpy()
    assert prob_hgg[res.test_labels == 1].mean() > prob_hgg[res.test_labels == 0].mean() + 0.2
    assert 0 < res.meta["threshold"] < 1 and res.meta["temperature"] > 0
    assert res.meta["class_names"] == ["LGG", "HGG"] and res.meta["sequences"] == ["t1", "t1ce", "t2", "flair"]
    assert not (tmp_path / "f0" / STATE_FILE).exists(), "the epoch state is removed once the fold is final"
    model, meta = load_checkpoint(tmp_path / "f0")
    x = toy.images[torch.from_numpy(split.test)].float()
    with torch.no_grad():
        assert np.allclose(model(x).numpy(), res.test_logits, atol=1e-4)


def test_resumed_fold_repeats_the_uninterrupted_one(toy: Cohort, tmp_path: Path) -> None:
    cfg = tiny_profile(epochs=3, augment=True).train
    split = make_splits(toy.labels, toy.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[1]
    straight = fit_fold(toy, split, cfg, tmp_path / "a", progress=False)

    def crash_after_first(rec: EpochRecord) -> None:
        if rec.epoch == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_fold(toy, split, cfg, tmp_path / "b", callbacks=[crash_after_first], progress=False)
    assert (tmp_path / "b" / STATE_FILE).is_file() and not (tmp_path / "b" / "meta.json").exists()
    seen: list[int] = []
    resumed = fit_fold(toy, split, cfg, tmp_path / "b", callbacks=[lambda r: seen.append(r.epoch)],
                       progress=False)
    assert seen == [1, 2], "the rerun must continue after the saved epoch"
    a, b = _history(tmp_path / "a"), _history(tmp_path / "b")
    assert [h["epoch"] for h in b] == [0, 1, 2]
    for ha, hb in zip(a, b, strict=True):
        for key in ("train_loss", "val_loss", "val_auc", "lr", "best"):
            assert ha[key] == pytest.approx(hb[key], rel=1e-5, abs=1e-6), key
    assert np.allclose(straight.test_logits, resumed.test_logits, atol=1e-5)
    assert straight.meta["best_epoch"] == resumed.meta["best_epoch"]


def test_who_task_fold_is_multiclass_without_threshold(cohort_dir: Path, tmp_path: Path) -> None:
    cohort = load_cohort(cohort_dir, task="who", progress=False)
    cfg = tiny_profile(epochs=1, task="who", imbalance="balanced_sampler").train
    split = make_splits(cohort.labels, cohort.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[2]
    res = fit_fold(cohort, split, cfg, tmp_path, progress=False)
    assert res.test_logits.shape == (len(split.test), 3)
    assert res.meta["class_names"] == ["WHO-II", "WHO-III", "WHO-IV"] and res.meta["threshold"] is None
    counts = res.meta["val_metrics"]["class_counts"]
    assert res.meta["num_classes"] == 3 and sum(counts) == len(split.val) and min(counts) >= 1


def test_pretrained_weights_seed_the_fold_model(cohort_dir: Path, tmp_path: Path) -> None:
    """A local MedicalNet-style file (MONAI ResNet10, 1 input channel) initialises the trunk; no silent skip."""
    from monai.networks.nets import resnet10

    from gliomagrade.errors import ConfigError
    from gliomagrade.train import _new_trainer

    source = resnet10(spatial_dims=3, n_input_channels=1, num_classes=1, shortcut_type="B", bias_downsample=False)
    path = tmp_path / "medicalnet_resnet10.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    cohort = load_cohort(cohort_dir, progress=False)
    split = make_splits(cohort.labels, cohort.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[0]
    cfg = tiny_profile(model="resnet10", model_kwargs={}, pretrained=str(path), plain=True).train
    tr = _new_trainer(cohort, split, cfg, None, torch.device("cpu"))  # type: ignore[arg-type]
    ours = tr.model.state_dict()
    assert torch.equal(ours["features.layer1.0.conv1.weight"], source.state_dict()["layer1.0.conv1.weight"])
    assert ours["features.conv1.weight"].shape[1] == 4  # stem adapted to the four sequences
    bad = tmp_path / "not_weights.pt"
    torch.save({"state_dict": {"whatever.weight": torch.zeros(2)}}, bad)
    with pytest.raises(ConfigError, match="unrecognised state dict"):
        _new_trainer(cohort, split, tiny_profile(model="resnet10", model_kwargs={}, pretrained=str(bad)).train,
                     None, torch.device("cpu"))  # type: ignore[arg-type]


def test_warm_up_epochs_are_never_kept(toy: Cohort, tmp_path: Path) -> None:
    """With min_epochs=4 the kept epoch is >= 3 even when an earlier one had the lowest validation loss."""
    cfg = tiny_profile(epochs=6, min_epochs=4, patience=1, augment=False).train
    split = make_splits(toy.labels, toy.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[0]
    res = fit_fold(toy, split, cfg, tmp_path / "f0", progress=False)
    hist = _history(tmp_path / "f0")
    assert res.meta["best_epoch"] >= 3
    assert res.meta["best_epoch"] == 3 + int(np.argmin([h["val_loss"] for h in hist[3:]]))
    assert len(hist) >= 4, "patience only counts after the warm-up"


def test_feature_l1_sparsifies_the_maps_the_cam_is_made_of(toy: Cohort, tmp_path: Path) -> None:
    """The L1 penalty drives evidence-free voxels to zero activation while the task is still learned."""
    split = make_splits(toy.labels, toy.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[0]
    x = toy.images[torch.from_numpy(split.test)].float()
    mean_act, gaps = [], []
    for l1 in (0.0, 1.0):
        res = fit_fold(toy, split, tiny_profile(epochs=4, augment=False, feature_l1=l1, plain=True).train,
                       tmp_path / f"l1_{l1}", progress=False)
        model, _ = load_checkpoint(tmp_path / f"l1_{l1}")
        with torch.no_grad():
            mean_act.append(float(model.forward_with_features(x)[1].abs().mean()))
        prob_hgg = torch.softmax(torch.from_numpy(res.test_logits), 1)[:, 1].numpy()
        gaps.append(prob_hgg[res.test_labels == 1].mean() - prob_hgg[res.test_labels == 0].mean())
    assert mean_act[1] < 0.7 * mean_act[0]
    assert gaps[1] > 0.2, "the penalised model still separates the grades"


def test_sequence_loss_adds_each_encoders_own_loss() -> None:
    """train_step's loss = CE(logits) + w * mean_g CE(share_g); nothing is added for a one-encoder model."""
    from gliomagrade.engine import train_step
    from gliomagrade.models import build_model

    x, y = torch.randn(4, 2, 16, 16, 16), torch.tensor([0, 1, 0, 1])
    ce = torch.nn.functional.cross_entropy
    for per_sequence, groups in ((True, 2), (False, 1)):
        torch.manual_seed(0)
        model = build_model("smallcnn", 2, 2, channels=(4, 4, 8, 8), per_sequence=per_sequence).eval()
        with torch.no_grad():
            logits, fmap = model.forward_with_features(x)
            shares = model.sequence_logits(fmap)
        expected = ce(logits, y) + (0.5 * sum(ce(shares[:, g], y) for g in range(2)) / 2 if groups == 2 else 0)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        got = train_step(model, opt, ce, x, y, sequence_loss=0.5)
        torch.testing.assert_close(got, expected)
    plain = train_step(lambda t: model(t), opt, ce, x, y, sequence_loss=0.5)  # e.g. a compiled callable
    torch.testing.assert_close(plain, ce(logits, y))


def test_lesion_loss_is_the_gates_cross_entropy_on_cell_fractions() -> None:
    """train_step's loss = CE(logits) + w * BCE(gate logits, each cell's lesion fraction)."""
    from gliomagrade.engine import lesion_targets, train_step
    from gliomagrade.models import build_model

    x, y = torch.randn(2, 1, 16, 16, 16), torch.tensor([0, 1])
    lesion = torch.zeros(2, 1, 16, 16, 16)
    lesion[0, 0, :8, :8, :6] = 1  # cell (0, 0, 0) of the 2^3 grid is 3/4 lesion
    ce = torch.nn.functional.cross_entropy
    torch.manual_seed(0)
    model = build_model("smallcnn", 1, 2, channels=(4, 8, 8), strides=(2, 2, 2), lesion_gate=True).eval()
    with torch.no_grad():
        logits, _, gate = model.forward_with_gate(x)
    target = lesion_targets(lesion, (2, 2, 2))
    assert target[0, 0, 0, 0, 0] == 0.75 and target[1].sum() == 0
    expected = ce(logits, y) + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(gate, target)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.testing.assert_close(train_step(model, opt, ce, x, y, lesion=lesion, lesion_loss=0.5), expected)


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise volumes with one bright 6^3 box each, random grades, and the boxes as lesion masks."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 1, 16, 16, 16)
    for i in range(n):
        c = torch.randint(0, 10, (3,), generator=g)
        masks[i, 0, c[0]:c[0] + 6, c[1]:c[1] + 6, c[2]:c[2] + 6] = 1
    return torch.randn(n, 1, 16, 16, 16, generator=g) * 0.5 + 1.5 * masks, torch.randint(0, 2, (n,), generator=g), masks


def test_lesion_gate_learns_where_the_lesion_is() -> None:
    """Trained by the lesion loss, the gate opens on the lesion's cells and stays shut elsewhere."""
    from gliomagrade.engine import lesion_targets, train_step
    from gliomagrade.models import build_model

    torch.manual_seed(0)
    model = build_model("smallcnn", 1, 2, channels=(4, 8, 8), strides=(2, 2, 1), lesion_gate=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(60):
        x, y, masks = _blobs(8, step)
        train_step(model, opt, torch.nn.functional.cross_entropy, x, y, lesion=masks, lesion_loss=1.0)
    x, _, masks = _blobs(16, 999)
    with torch.no_grad():
        gate = model.eval().forward_with_gate(x)[2]
    target, opened = lesion_targets(masks, tuple(gate.shape[2:])), torch.sigmoid(gate)
    assert opened[target > 0.5].mean() > opened[target == 0].mean() + 0.2
    # GAP weights each cell by the gate: the pooling leans on the lesion's cells
    assert float(opened[target > 0].sum() / opened.sum()) > 2 * float((target > 0).float().mean())


def test_fit_fold_trains_the_gate_on_augmented_lesion_masks(toy: Cohort, tmp_path: Path) -> None:
    """Through fit_fold (augmentation moves the masks with the images), the kept model's gate fits the
    test cases' lesions better than the same network untrained."""
    from gliomagrade.engine import lesion_targets
    from gliomagrade.models import build_model
    from gliomagrade.segment import tissue_fractions

    kw = {"channels": [8, 16, 32], "strides": [1, 2, 2], "lesion_gate": True}
    cfg = tiny_profile(epochs=6, min_epochs=6, augment=True, model_kwargs=kw, lesion_loss=1.0).train
    split = make_splits(toy.labels, toy.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[0]
    fit_fold(toy, split, cfg, tmp_path / "g", progress=False)
    model, meta = load_checkpoint(tmp_path / "g")
    assert model.lesion_gated and meta["train_config"]["lesion_loss"] == 1.0
    idx = torch.from_numpy(split.test)
    x = toy.images[idx].float()
    bce = []
    for net in (build_model("smallcnn", 4, 2, **kw).eval(), model):
        with torch.no_grad():
            gate = net.forward_with_gate(x)[2]
        target = lesion_targets(tissue_fractions(toy.lesion_masks()[idx]), tuple(gate.shape[2:])).sum(1, keepdim=True)
        bce.append(float(torch.nn.functional.binary_cross_entropy_with_logits(gate, target)))
    assert bce[1] < 0.7 * bce[0]


def test_a_lesion_gate_without_segmentations_names_the_cases(tmp_path: Path) -> None:
    from gliomagrade.errors import InputError

    bare = load_cohort(write_cohort(tmp_path / "c", n=12, with_seg=False), progress=False)
    kw = {"channels": [8, 16, 32], "strides": [1, 2, 2], "lesion_gate": True}
    cfg = tiny_profile(epochs=1, model_kwargs=kw, lesion_loss=1.0).train
    split = make_splits(bare.labels, bare.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[0]
    with pytest.raises(InputError, match=r"needs a segmentation for every case; 12 lack one: SYN000"):
        fit_fold(bare, split, cfg, tmp_path / "f", progress=False)


def test_fit_fold_trains_a_unet_to_segment_and_grade(toy: Cohort, tmp_path: Path) -> None:
    """``--model unet`` on the quick profile: the gate options drop, the segmentation loss stays; the kept
    U-Net segments the held-out lesions better than untrained, and its grade separates them."""
    from gliomagrade.engine import segmentation_loss
    from gliomagrade.models import build_model
    from gliomagrade.segment import tissue_fractions

    kw = {"channels": [8, 16, 32], "strides": [2, 2]}
    cfg = tiny_profile(epochs=12, min_epochs=12, augment=False, model="unet", model_kwargs=kw).train
    assert cfg.lesion_loss == 1.0 and "lesion_gate" not in cfg.model_kwargs
    split = make_splits(toy.labels, toy.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[0]
    res = fit_fold(toy, split, cfg, tmp_path / "u", progress=False)
    model, _ = load_checkpoint(tmp_path / "u")
    assert model.name == "unet" and model.lesion_gated
    idx = torch.from_numpy(split.test)
    x, masks = toy.images[idx].float(), tissue_fractions(toy.lesion_masks()[idx])
    losses = []
    for net in (build_model("unet", 4, 2, **kw).eval(), model):
        with torch.no_grad():
            losses.append(float(segmentation_loss(net.forward_with_gate(x)[2], masks)))
    assert losses[1] < 0.5 * losses[0]
    margin = res.test_logits[:, 1] - res.test_logits[:, 0]
    assert margin[res.test_labels == 1].min() > margin[res.test_labels == 0].max()
