"""The pipeline's ingest step reads a raw cohort from S3 (MinIO on a cluster) through the same store."""

from __future__ import annotations

from pathlib import Path

import pytest

from gliomagrade.errors import InputError
from gliomagrade.pipeline_steps import fetch_cohort

from .s3server import KEY_ID, SECRET, MotoServer

pytestmark = pytest.mark.integration


def test_fetch_cohort_downloads_an_s3_prefix(moto: MotoServer, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = moto.store(prefix="cohorts/syn")
    files = {"case1/case1_t1.nii.gz": b"a" * 10, "case1/case1_t1ce.nii.gz": b"b" * 20, "name_mapping.csv": b"x"}
    for key, data in files.items():
        store.put_bytes(key, data)
    for name, value in {"S3_ENDPOINT": moto.endpoint, "S3_USE_HTTPS": "0", "AWS_ACCESS_KEY_ID": KEY_ID,
                        "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    root = fetch_cohort(f"s3://{store.bucket}/cohorts/syn", tmp_path / "raw")
    assert {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()} == files


def test_fetch_cohort_names_a_missing_local_cohort(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="raw cohort not found"):
        fetch_cohort(str(tmp_path / "nope"), tmp_path / "raw")
