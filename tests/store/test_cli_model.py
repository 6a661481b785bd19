"""`glioma model ...` end to end: local default store and an s3:// store configured only by env vars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gliomagrade.cli import main
from gliomagrade.registry import triton_storage_uri

from .s3server import KEY_ID, SECRET, MotoServer
from .test_registry import fields, model_dir


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_publish_list_promote_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    store = str(tmp_path / "registry")
    manifest = tmp_path / "fields.json"
    manifest.write_text(json.dumps(fields()))
    for tag in "ab":
        code, out, _ = run(capsys, "model", "publish", str(model_dir(tmp_path / tag, tag)), "--manifest",
                           str(manifest), "--store", store)
        assert code == 0 and "version" in out
    assert run(capsys, "model", "promote", "1", "--reason", "first", "--store", store)[0] == 0
    assert run(capsys, "model", "promote", "latest", "--store", store)[0] == 0
    code, out, _ = run(capsys, "model", "list", "--store", store)
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert code == 0 and len(rows) == 2
    assert "0.910 [0.860, 0.950]" in rows[0] and "pass" in rows[0] and "promoted" not in rows[0]
    assert "promoted" in rows[1]
    code, out, _ = run(capsys, "model", "show", "promoted", "--store", store)
    shown = json.loads(out)
    assert shown["manifest"]["version"] == 2 and shown["promoted"] is True
    assert triton_storage_uri(store, "glioma-grade", "promoted") == shown["uri"]  # what deploy puts in storageUri
    assert triton_storage_uri(store, "glioma-grade", "1").endswith("/glioma-grade/versions/1")
    assert run(capsys, "model", "rollback", "--reason", "drift", "--store", store)[:2] == (
        0, "rolled back to version 1 (was: 2)\n")
    code, out, _ = run(capsys, "model", "history", "--store", store)
    assert code == 0 and "rollback" in out and "drift" in out
    code, _, err = run(capsys, "model", "rollback", "--store", store)
    assert code == 2 and "no earlier promoted version" in err
    code, _, err = run(capsys, "model", "show", "7", "--store", store)
    assert code == 2 and "no version 7" in err
    assert run(capsys, "model", "gc", "--store", store)[0] == 0
    code, _, _ = run(capsys, "model", "download", "promoted", str(tmp_path / "dl"), "--store", store)
    assert code == 0 and (tmp_path / "dl" / "manifest.json").is_file()


@pytest.mark.integration
def test_cli_reads_s3_settings_from_the_environment(moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"S3_ENDPOINT": moto.endpoint, "S3_USE_HTTPS": "0", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
                        "GLIOMA_STORE_CREATE_BUCKET": "1", "GLIOMA_STORE_RETRIES": "2"}.items():
        monkeypatch.setenv(name, value)
    manifest = tmp_path / "fields.json"
    manifest.write_text(json.dumps(fields()))
    code, out, _ = run(capsys, "model", "publish", str(model_dir(tmp_path / "a", "a")), "--manifest", str(manifest),
                       "--store", "minio://cli-bucket/registry")
    assert code == 0 and "minio://cli-bucket/registry/glioma-grade/versions/1" in out
    code, out, _ = run(capsys, "model", "show", "latest", "--store", "s3://cli-bucket/registry")
    assert code == 0 and json.loads(out)["uri"] == "s3://cli-bucket/registry/glioma-grade/versions/1"
    monkeypatch.setenv("GLIOMA_STORE_CREATE_BUCKET", "0")
    code, _, err = run(capsys, "model", "list", "--store", "s3://missing-bucket/registry")
    assert code == 2 and "missing-bucket" in err and moto.endpoint in err and SECRET not in err
