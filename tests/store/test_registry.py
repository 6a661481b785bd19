"""Registry behaviour on both backends: publish/download, atomic visibility, checksums, promotion, races."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gliomagrade.errors import StoreError
from gliomagrade.registry import ModelManifest, Registry, promotion_stack
from gliomagrade.store import Store


def fields(**over: Any) -> dict[str, Any]:
    """Caller manifest fields as the export/register step writes them."""
    base: dict[str, Any] = {
        "class_names": ["LGG", "HGG"],
        "sequences": ["t1", "t1ce", "t2", "flair"],
        "input": {"name": "image", "dtype": "float32", "shape": [-1, 4, 64, 64, 64]},
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 2]},
                    {"name": "features", "dtype": "float32", "shape": [-1, 64, 4, 4, 4]}],
        "temperature": 1.4,
        "threshold": 0.5,
        "head": {"in_features": 64, "num_classes": 2},
        "metrics": {"auc": {"value": 0.91, "ci_low": 0.86, "ci_high": 0.95}, "balanced_accuracy": 0.84},
        "gate": {"passed": True, "reasons": ["auc lower CI 0.86 >= 0.75"]},
        "cohort_fingerprint": "sha256:" + "ab" * 32,
        "train": {"model": "smallcnn", "folds": 5},
        "preprocess": {"grid": [64, 64, 64]},
        "reference": {"prob_HGG": {"edges": [0.0, 0.5, 1.0], "counts": [10, 30]}},
        "qc_ranges": {"t1ce_brain_mean": (80.0, 300.0)},
    }
    return {**base, **over}


def model_dir(root: Path, tag: str) -> Path:
    """A Triton-shaped folder whose contents depend on ``tag``."""
    (root / "glioma-grade" / "1").mkdir(parents=True)
    (root / "glioma-grade" / "1" / "model.onnx").write_bytes(hashlib.sha256(tag.encode()).digest() * 512)
    (root / "glioma-grade" / "config.pbtxt").write_text(f'name: "glioma-grade" # {tag}\n')
    (root / "head.json").write_text(json.dumps({"weight": [[0.1] * 4] * 2, "bias": [0, 0], "tag": tag}))
    return root


def test_publish_download_round_trip(store: Store, tmp_path: Path) -> None:
    reg = Registry(store, "glioma-grade")
    src = model_dir(tmp_path / "a", "a")
    v1 = reg.publish(src, fields())
    v2 = reg.publish({"glioma-grade/1/model.onnx": src / "glioma-grade/1/model.onnx"}, fields(temperature=2.0))
    assert (v1.version, v2.version) == (1, 2)
    assert [v.version for v in reg.list_versions()] == [1, 2]
    assert v1.uri == store.url("glioma-grade/versions/1")
    dest = reg.download(1, tmp_path / "dl")
    for rel in ("glioma-grade/1/model.onnx", "glioma-grade/config.pbtxt", "head.json"):
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
    manifest = ModelManifest.model_validate_json((dest / "manifest.json").read_bytes())
    assert manifest.version == 1 and manifest.model_name == "glioma-grade"
    assert manifest.files["head.json"].sha256 == hashlib.sha256((src / "head.json").read_bytes()).hexdigest()
    assert manifest.metrics["balanced_accuracy"].value == pytest.approx(0.84)
    assert manifest.code.gliomagrade
    latest = reg.resolve("latest")
    assert latest.version == 2 and latest.manifest.temperature == 2.0 and list(latest.manifest.files) == [
        "glioma-grade/1/model.onnx"]
    assert not store.list("glioma-grade/staging")  # staging cleaned after commit


def test_tampered_object_is_detected_on_download(store: Store, tmp_path: Path) -> None:
    reg = Registry(store, "glioma-grade")
    reg.publish(model_dir(tmp_path / "a", "a"), fields())
    store.put_bytes("glioma-grade/versions/1/head.json", b'{"weight": "evil"}')
    with pytest.raises(StoreError, match=r"checksum mismatch for head\.json of glioma-grade version 1"):
        reg.download(1, tmp_path / "dl")
    assert not (tmp_path / "dl" / "head.json").exists()  # the bad file is not left for a server to load


def test_manifest_with_escaping_paths_is_refused(store: Store, tmp_path: Path) -> None:
    reg = Registry(store, "glioma-grade")
    reg.publish(model_dir(tmp_path / "a", "a"), fields())
    doc = json.loads(store.get_bytes("glioma-grade/versions/1/manifest.json"))
    doc["files"]["../../outside.txt"] = doc["files"].pop("head.json")
    store.put_bytes("glioma-grade/versions/1/manifest.json", json.dumps(doc).encode())
    with pytest.raises(StoreError, match=r"(?s)manifest .*versions/1/manifest.json is invalid.*invalid store key"):
        reg.download(1, tmp_path / "dl" / "x")
    assert not (tmp_path / "outside.txt").exists()


def test_half_written_version_is_never_visible(store: Store, tmp_path: Path) -> None:
    reg = Registry(store, "glioma-grade")
    reader = Registry(store, "glioma-grade")
    seen: list[tuple[str, list[int]]] = []

    def crash_before_commit(stage: str, detail: str) -> None:
        seen.append((stage, reader.version_numbers()))
        if stage == "copied" and len([s for s, _ in seen if s == "copied"]) == 2:
            raise RuntimeError("publisher died")

    with pytest.raises(RuntimeError, match="publisher died"):
        reg.publish(model_dir(tmp_path / "a", "a"), fields(), on_progress=crash_before_commit)
    assert [s for s, _ in seen][:5] == ["uploaded", "uploaded", "uploaded", "staged", "claimed"]
    assert all(versions == [] for _, versions in seen)
    assert reader.list_versions() == [] and store.list("glioma-grade/versions/1")  # data there, no manifest
    with pytest.raises(StoreError, match="no versions"):
        reader.resolve("latest")
    report = reg.gc(min_age=timedelta(0))
    assert report.uncommitted_versions == [1] and not store.list("glioma-grade/versions")
    assert reg.publish(model_dir(tmp_path / "b", "b"), fields()).version == 2  # the burnt number is not reused


def test_gc_keeps_recent_leftovers(store: Store, tmp_path: Path) -> None:
    reg = Registry(store, "glioma-grade")
    store.put_bytes("glioma-grade/staging/abc/model.onnx", b"partial")
    assert reg.gc(min_age=timedelta(hours=1)).staging == []
    assert reg.gc(min_age=timedelta(0)).staging == ["glioma-grade/staging/abc"]
    assert not store.list("glioma-grade/staging")


def test_invalid_manifest_is_refused_before_upload(store: Store, tmp_path: Path) -> None:
    reg = Registry(store, "glioma-grade")
    src = model_dir(tmp_path / "a", "a")
    bad = fields()
    del bad["class_names"]
    with pytest.raises(StoreError, match="class_names"):
        reg.publish(src, bad)
    with pytest.raises(StoreError, match=r"\['version'\] are set by the registry"):
        reg.publish(src, fields(version=7))
    with pytest.raises(StoreError, match="num_classes is 3 but there are 2 class_names"):
        reg.publish(src, fields(head={"in_features": 64, "num_classes": 3}))
    with pytest.raises(StoreError, match="temprature"):
        reg.publish(src, fields(temprature=1.0))  # typos are not silently dropped
    with pytest.raises(StoreError, match="edges"):
        reg.publish(src, fields(reference={"prob_HGG": {"edges": [0.0, 1.0], "counts": [1, 2]}}))
    assert store.list("") == []


def test_promote_rollback_and_history(store: Store, tmp_path: Path) -> None:
    reg = Registry(store, "glioma-grade")
    for tag in "abc":
        reg.publish(model_dir(tmp_path / tag, tag), fields())
    failed = reg.publish(model_dir(tmp_path / "d", "d"), fields(gate={"passed": False, "reasons": ["ECE 0.2 > 0.1"]}))
    with pytest.raises(StoreError, match="no promoted version"):
        reg.resolve("promoted")
    for v in (1, 2, 3):
        reg.promote(v, reason=f"release {v}")
    assert reg.resolve("promoted").version == 3
    assert [v.version for v in reg.list_versions() if v.promoted] == [3]
    with pytest.raises(StoreError, match=r"failed its evaluation gate \(ECE 0.2 > 0.1\)"):
        reg.promote(failed.version)
    back = reg.rollback("bad calibration on site B")
    assert (back.action, back.version, back.previous) == ("rollback", 2, 3)
    assert reg.resolve("promoted").version == 2
    assert reg.rollback().version == 1
    with pytest.raises(StoreError, match="no earlier promoted version"):
        reg.rollback()
    reg.promote(failed.version, "override by clinician", force=True)
    events = reg.history()
    assert [(e.action, e.version, e.previous) for e in events] == [
        ("promote", 1, None), ("promote", 2, 1), ("promote", 3, 2), ("rollback", 2, 3), ("rollback", 1, 2),
        ("promote", 4, 1)]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6] and events[3].reason == "bad calibration on site B"
    assert promotion_stack(events) == [1, 4]
    assert reg.promoted() == events[-1]
    with pytest.raises(StoreError, match="no version 9 .*committed versions: 1, 2, 3, 4"):
        reg.promote(9)


def test_pointer_out_of_sync_with_history_is_reported(store: Store, tmp_path: Path) -> None:
    reg = Registry(store, "glioma-grade")
    for tag in "ab":
        reg.publish(model_dir(tmp_path / tag, tag), fields())
    reg.promote(1)
    reg.promote(2)
    store.put_bytes("glioma-grade/promoted.json", store.get_bytes("glioma-grade/history/00000001.json"))
    with pytest.raises(StoreError, match="points at version 1 but the history ends at 2"):
        reg.rollback()


def test_concurrent_publishers_never_share_a_version(store: Store, tmp_path: Path) -> None:
    n = 4
    sources = [model_dir(tmp_path / f"s{i}", f"s{i}") for i in range(n)]
    barrier = threading.Barrier(n)
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def publish(i: int) -> None:
        reg = Registry(store, "glioma-grade")  # one registry object per publisher, as in separate pods
        try:
            barrier.wait(10)
            results[i] = reg.publish(sources[i], fields(extra={"publisher": i})).version
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(results.values()) == list(range(1, n + 1))
    reg = Registry(store, "glioma-grade")
    for i, version in results.items():
        info = reg.resolve(version)
        assert info.manifest.extra == {"publisher": i}
        dest = reg.download(version, tmp_path / f"dl{i}")
        assert (dest / "head.json").read_bytes() == (sources[i] / "head.json").read_bytes()


def test_concurrent_promotions_get_distinct_history_entries(store: Store, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    reg = Registry(store, "glioma-grade")
    for _ in range(3):
        reg.publish({"model.onnx": tmp_path / "model.onnx"}, fields())
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def promote(version: int) -> None:
        try:
            barrier.wait(10)
            Registry(store, "glioma-grade").promote(version, f"thread {version}")
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    events = reg.history()
    assert [e.seq for e in events] == [1, 2, 3] and sorted(e.version for e in events) == [1, 2, 3]


@pytest.mark.parametrize("name", ["Glioma", "a/b", "", "-x", "x" * 64])
def test_model_names_are_validated(tmp_path: Path, name: str) -> None:
    from gliomagrade.store import LocalStore

    with pytest.raises(StoreError, match="invalid model name"):
        Registry(LocalStore(tmp_path), name)
