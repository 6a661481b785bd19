"""The S3 endpoint dies mid-publish: nothing becomes visible, and publishing again after a restart works.

moto_server keeps its state in memory, so a restart empties it (like a MinIO pod losing a volume): the
tests re-create the bucket, and the in-flight publish must notice that its staged uploads are gone.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from gliomagrade.errors import StoreError
from gliomagrade.registry import Registry
from gliomagrade.store import RetryPolicy

from .s3server import MotoServer, TcpProxy
from .test_registry import fields, model_dir

pytestmark = pytest.mark.integration


def test_server_killed_mid_upload_leaves_no_version_and_retry_after_restart_succeeds(
    own_moto: MotoServer, tmp_path: Path
) -> None:
    store = own_moto.store("models")
    reg = Registry(store, "glioma-grade")
    reader = Registry(own_moto.store("models"), "glioma-grade")
    src = model_dir(tmp_path / "a", "a")
    visible_before_kill: list[list[int]] = []

    def kill_after_first_upload(stage: str, detail: str) -> None:
        if stage == "uploaded" and not visible_before_kill:
            visible_before_kill.append(reader.version_numbers())
            assert store.list("glioma-grade/staging")  # the upload really reached the server
            own_moto.kill()

    with pytest.raises(StoreError, match=r"failed after 3 attempts .*127\.0\.0\.1"):
        reg.publish(src, fields(), on_progress=kill_after_first_upload)
    assert visible_before_kill == [[]]

    own_moto.start()  # same port, empty state; the stores re-create the bucket (they are allowed to)
    assert reader.list_versions() == []
    info = reg.publish(src, fields())
    assert info.version == 1
    dest = reg.download("latest", tmp_path / "dl")
    assert (dest / "head.json").read_bytes() == (src / "head.json").read_bytes()


def test_restart_during_backoff_is_retried_and_lost_staging_is_caught(own_moto: MotoServer, tmp_path: Path) -> None:
    retry = RetryPolicy(attempts=25, base_delay=0.1, max_delay=0.5)  # ~10 s: a slow restart on a busy CI box
    store = own_moto.store("models", retry=retry)
    reg = Registry(store, "glioma-grade")
    src = model_dir(tmp_path / "a", "a")
    restarted = threading.Event()

    def restart_soon() -> None:
        own_moto.start()  # empty: the store re-creates the bucket (it may), the staged file is gone
        restarted.set()

    def kill_and_schedule_restart(stage: str, detail: str) -> None:
        if stage == "uploaded" and not restarted.is_set() and own_moto.proc and own_moto.proc.poll() is None:
            own_moto.kill()
            threading.Timer(0.3, restart_soon).start()

    # the next uploads are retried until the restarted server answers; the size check then finds the
    # first staged file missing (lost with the old server) and refuses to commit
    with pytest.raises(StoreError, match=r"staged file .* is missing .*after upload"):
        reg.publish(src, fields(), on_progress=kill_and_schedule_restart)
    assert restarted.is_set()
    assert reg.list_versions() == []
    assert reg.publish(src, fields()).version == 1
    assert reg.download(1, tmp_path / "dl").is_dir()


def test_network_outage_is_retried_and_the_same_publish_completes(
    moto: MotoServer, port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = TcpProxy(port, moto.port).start()
    try:
        store = moto.store(endpoint=proxy.endpoint, retry=RetryPolicy(attempts=25, base_delay=0.05, max_delay=0.3))
        reg = Registry(store, "glioma-grade")
        src = model_dir(tmp_path / "a", "a")
        cut: list[str] = []

        def cut_network(stage: str, detail: str) -> None:
            if stage == "uploaded" and not cut:
                cut.append(detail)
                proxy.stop()
                threading.Timer(0.4, proxy.start).start()

        with caplog.at_level(logging.WARNING, logger="gliomagrade.store"):
            info = reg.publish(src, fields(), on_progress=cut_network)
        assert cut and info.version == 1
        assert [r for r in caplog.records if "retry" in r.getMessage()]  # the outage was real and retried
        dest = reg.download(1, tmp_path / "dl")
        assert (dest / "glioma-grade/1/model.onnx").read_bytes() == (src / "glioma-grade/1/model.onnx").read_bytes()
    finally:
        proxy.stop()
