"""Store contract on both backends, URI/env parsing, and S3 failure modes against a real moto_server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gliomagrade.errors import StoreError
from gliomagrade.store import (
    LocalStore,
    ObjectExistsError,
    ObjectNotFoundError,
    RetryPolicy,
    S3Settings,
    S3Store,
    Store,
    open_store,
)

from .s3server import FAST_RETRY, SECRET, MotoServer, unused_port


def test_bytes_and_files_round_trip(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    payload = bytes(range(256)) * 24 * 1024 + b"odd-end"  # 6 MiB + 7 B: a 2-part multipart upload on S3
    src.write_bytes(payload)
    store.put_file("m/a/model.onnx", src)
    store.put_bytes("m/a/meta.json", b'{"k": 1}')
    assert store.get_bytes("m/a/meta.json") == b'{"k": 1}'
    out = store.get_file("m/a/model.onnx", tmp_path / "out" / "model.onnx")
    assert out.read_bytes() == payload
    assert store.stat("m/a/model.onnx").size == len(payload)
    assert store.exists("m/a/meta.json") and not store.exists("m/a/nothing")
    store.put_bytes("m/a/meta.json", b"replaced")
    assert store.get_bytes("m/a/meta.json") == b"replaced"


def test_list_and_delete_use_path_prefixes(store: Store) -> None:
    for key in ("m/v/1/a", "m/v/1/b/c", "m/v/10/a", "m/v/1x", "other/z"):
        store.put_bytes(key, key.encode())
    assert [o.key for o in store.list("m/v/1")] == ["m/v/1/a", "m/v/1/b/c"]
    assert [o.key for o in store.list("m/v/1/")] == ["m/v/1/a", "m/v/1/b/c"]
    assert len(store.list("")) == 5
    assert store.list("m/v/1/b/c")[0].size == len(b"m/v/1/b/c")  # an exact key lists itself
    assert store.delete("m/v/1") == 2
    assert [o.key for o in store.list("m")] == ["m/v/10/a", "m/v/1x"]
    assert store.list("nothing/here") == []
    with pytest.raises(StoreError, match="refusing to delete the whole store"):
        store.delete("")


def test_conditional_write_refuses_an_existing_key(store: Store) -> None:
    store.put_bytes("m/claims/1.json", b"first", if_absent=True)
    with pytest.raises(ObjectExistsError, match="claims/1.json"):
        store.put_bytes("m/claims/1.json", b"second", if_absent=True)
    assert store.get_bytes("m/claims/1.json") == b"first"


def test_copy_and_missing_objects(store: Store) -> None:
    store.put_bytes("m/staging/x/f", b"data")
    store.copy("m/staging/x/f", "m/versions/1/f")
    assert store.get_bytes("m/versions/1/f") == b"data"
    with pytest.raises(ObjectNotFoundError, match="m/versions/9/f"):
        store.get_bytes("m/versions/9/f")
    with pytest.raises(ObjectNotFoundError):
        store.stat("m/versions/9/f")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "a\\b", ""])
def test_invalid_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(StoreError, match="invalid store key"):
        LocalStore(tmp_path).put_bytes(key, b"x")


def test_uris_select_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT", "minio-service.kubeflow:9000")
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    s3 = open_store("s3://models/gliomagrade/registry")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("models", "gliomagrade/registry/")
    assert s3.uri == "s3://models/gliomagrade/registry"
    assert s3.url("m/versions/1") == "s3://models/gliomagrade/registry/m/versions/1"
    kfp = open_store("minio://mlpipeline/v2/artifacts")
    assert isinstance(kfp, S3Store) and (kfp.bucket, kfp.prefix) == ("mlpipeline", "v2/artifacts/")
    assert open_store("s3://bucket").prefix == ""
    local = open_store(tmp_path.as_uri())
    assert isinstance(local, LocalStore) and local.root == tmp_path.resolve()
    assert isinstance(open_store(str(tmp_path / "reg")), LocalStore)
    monkeypatch.setenv("GLIOMA_STORE", str(tmp_path / "env-reg"))
    assert open_store().uri == (tmp_path / "env-reg").resolve().as_uri()


@pytest.mark.parametrize(("uri", "message"), [
    ("s3://AKIA:topsecret@bucket/p", "carries credentials"),
    ("gs://bucket/p", "unsupported store URI scheme 'gs'"),
    ("s3:///prefix", "has no bucket"),
    ("s3://Not_A_Bucket/p", "invalid S3 bucket name 'Not_A_Bucket'"),
    ("file://host/path", "names host"),
    ("s3://bucket/p?versionId=3", "query"),
])
def test_bad_uris_are_refused(uri: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        open_store(uri)
    assert "topsecret" not in str(info.value)


def test_s3_settings_follow_kserve_secret_conventions() -> None:
    env = {"S3_ENDPOINT": "minio.kubeflow:9000", "S3_USE_HTTPS": "0", "S3_VERIFY_SSL": "0",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "minio", "AWS_SECRET_ACCESS_KEY": "minio123"}
    s = S3Settings.from_env(env)
    assert (s.endpoint, s.secure, s.verify_ssl, s.region) == ("minio.kubeflow:9000", False, False, "eu-west-1")
    assert s.endpoint_url == "http://minio.kubeflow:9000"
    assert "minio123" not in repr(s) and "minio123" not in s.endpoint_url
    url = S3Settings.from_env({"AWS_ENDPOINT_URL": "https://s3.example.org", "AWS_REGION": "us-east-2",
                               "MINIO_ACCESS_KEY": "k", "MINIO_SECRET_KEY": "s"})
    assert (url.endpoint, url.secure, url.region, url.access_key) == ("s3.example.org", True, "us-east-2", "k")
    assert S3Settings.from_env({}).secure is True  # KServe's default: s3-usehttps "1"
    with pytest.raises(StoreError, match="both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        S3Settings.from_env({"AWS_ACCESS_KEY_ID": "only-the-key"})
    with pytest.raises(StoreError, match="S3_USE_HTTPS must be 0/1"):
        S3Settings.from_env({"S3_USE_HTTPS": "maybe"})
    with pytest.raises(StoreError, match="must not carry credentials"):
        S3Settings.from_env({"S3_ENDPOINT": "http://user:pw@minio:9000"})


@pytest.mark.integration
def test_missing_bucket_names_bucket_and_endpoint(moto: MotoServer) -> None:
    store = moto.store("no-such-bucket", create=False)
    with pytest.raises(StoreError) as info:
        store.put_bytes("m/x", b"x")
    text = str(info.value)
    assert "no-such-bucket" in text and moto.endpoint in text and "may not create it" in text
    created = moto.store("created-on-demand", create=True)
    created.put_bytes("m/x", b"x")
    assert created.get_bytes("m/x") == b"x"


@pytest.mark.integration
def test_unreachable_endpoint_retries_then_fails_clearly(port: int, caplog: pytest.LogCaptureFixture) -> None:
    settings = S3Settings(endpoint=f"127.0.0.1:{port}", secure=False, region="us-east-1", access_key="k",
                          secret_key=SECRET, connect_timeout=1.0)
    store = S3Store("bucket", "", settings=settings, retry=FAST_RETRY)
    with caplog.at_level(logging.WARNING, logger="gliomagrade.store"), pytest.raises(StoreError) as info:
        store.get_bytes("m/x")
    assert "failed after 3 attempts" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)
    assert sum("retry" in r.getMessage() for r in caplog.records) == 2
    assert SECRET not in str(info.value) and all(SECRET not in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoServer, str, str]]:
    """A moto_server checking signatures against an IAM user it creates (the probe + 3 IAM calls are free)."""
    import boto3

    server = MotoServer(unused_port(), tmp_path_factory.mktemp("moto-iam"),
                        env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}).start()
    try:
        iam = boto3.client("iam", endpoint_url=f"http://{server.endpoint}", region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="pipeline")
        iam.put_user_policy(UserName="pipeline", PolicyName="s3", PolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'))
        key = iam.create_access_key(UserName="pipeline")["AccessKey"]
        yield server, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.parametrize("which", ["unknown key id", "wrong secret"])
def test_bad_credentials_fail_fast_and_clearly(iam_moto: tuple[MotoServer, str, str], which: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    server, key_id, secret = iam_moto
    good = server.store(access_key=key_id, secret_key=secret, retry=RetryPolicy(attempts=1))
    good.put_bytes("m/ok", b"ok")  # the same server accepts the right credentials
    bad_key, bad_secret = ("AKIAUNKNOWN0000000", secret) if which == "unknown key id" else (key_id, "not-the-secret")
    bad = S3Store(good.bucket, "reg", settings=server.settings(access_key=bad_key, secret_key=bad_secret),
                  retry=FAST_RETRY)
    with caplog.at_level(logging.WARNING, logger="gliomagrade.store"), pytest.raises(StoreError) as info:
        bad.put_bytes("m/x", b"x")
    text = str(info.value)
    assert "refused the credentials" in text and server.endpoint in text and "AWS_ACCESS_KEY_ID" in text
    assert bad_secret not in text and secret not in text
    assert not [r for r in caplog.records if "retry" in r.getMessage()]  # auth errors are not retried
