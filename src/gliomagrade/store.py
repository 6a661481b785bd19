"""Artifact store: one interface over a local directory and an S3/MinIO bucket (the ``minio`` SDK).

``open_store(uri)`` picks the backend from the URI:

- a plain path or ``file:///abs/path`` -> :class:`LocalStore`;
- ``s3://bucket/prefix`` or KFP's ``minio://bucket/prefix`` -> :class:`S3Store`, configured from the
  environment exactly as a Kubernetes Secret (KServe storage-initializer conventions) provides it.

Keys are ``/``-separated paths relative to the store root. ``list`` and ``delete`` take *path*
prefixes: ``list("m/versions/1")`` sees ``m/versions/1/...`` but never ``m/versions/10/...``.

Write semantics (the registry builds its atomic publication on these):

- LocalStore: every write goes to a hidden temporary file in the target directory, is fsynced and
  then ``os.replace``-d into place, so a reader sees the old object or the new one, never half of one.
  ``put_bytes(..., if_absent=True)`` uses ``os.link`` of the temporary file, which fails atomically
  when the target exists (exclusive create on POSIX filesystems; not guaranteed on old NFS).
- S3Store: a single-object PUT (and each multipart upload's completion) is atomic in S3/MinIO.
  ``if_absent=True`` sends ``If-None-Match: *`` (AWS S3 since 2024-08, MinIO, moto); on a server that
  ignores the header it degrades to last-writer-wins, which the registry detects by reading back.
  Transient failures (connection refused/reset, timeouts, 5xx, SlowDown) are retried with
  exponential backoff; auth and bucket problems raise :class:`StoreError` at once.

Credentials never appear in URIs, reprs, logs or error messages.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import logging
import os
import random
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from gliomagrade.errors import StoreError

if TYPE_CHECKING:
    from minio import Minio

log = logging.getLogger(__name__)

T = TypeVar("T")
TMP_MARK = ".tmp-"
"""Name prefix of LocalStore's in-flight temporary files; never listed."""
CHUNK = 1 << 20


class ObjectNotFoundError(StoreError):
    """The key does not exist in the store."""


class ObjectExistsError(StoreError):
    """A conditional (``if_absent``) write found the key already present."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: key relative to the store root, size in bytes, last modification (UTC)."""

    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient errors: ``attempts`` tries, delay ``base * 2**i`` capped."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryPolicy:
        """Read GLIOMA_STORE_RETRIES (attempts) and GLIOMA_STORE_BACKOFF (base seconds)."""
        env = os.environ if env is None else env
        try:
            return cls(attempts=max(1, int(env.get("GLIOMA_STORE_RETRIES", cls.attempts))),
                       base_delay=float(env.get("GLIOMA_STORE_BACKOFF", cls.base_delay)))
        except ValueError as exc:
            raise StoreError(f"GLIOMA_STORE_RETRIES/GLIOMA_STORE_BACKOFF must be numbers: {exc}") from exc

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based), with +-20 % jitter."""
        return min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.8, 1.2)


def check_key(key: str) -> str:
    """Validate a store key: relative, ``/``-separated, no empty, ``.`` or ``..`` parts."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid store key {key!r}: expected a relative path like 'model/versions/1/model.onnx'")
    return key


def _norm_prefix(prefix: str) -> str:
    """Turn a path prefix into '' (everything) or 'a/b/' (that directory)."""
    prefix = prefix.strip("/")
    return "" if not prefix else check_key(prefix) + "/"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Store(ABC):
    """Object storage with path-like keys; see the module docstring for each backend's semantics."""

    uri: str

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file to ``key`` (replacing it atomically)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """Write ``data`` to ``key``; with ``if_absent`` raise ObjectExistsError if the key exists."""

    @abstractmethod
    def get_file(self, key: str, dest: Path) -> Path:
        """Download ``key`` to ``dest`` (written atomically); return ``dest``."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read the whole object ``key``."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and modification time of ``key``; ObjectNotFoundError if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object under the path prefix, sorted by key."""

    @abstractmethod
    def delete(self, prefix: str) -> int:
        """Delete the object ``prefix`` and every object under it; return how many were deleted."""

    @abstractmethod
    def copy(self, src: str, dst: str) -> None:
        """Copy object ``src`` to ``dst`` inside the store (server side on S3)."""

    def exists(self, key: str) -> bool:
        """Whether the object ``key`` exists."""
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def url(self, key: str = "") -> str:
        """The URI of ``key`` (or of the root), e.g. for a KServe ``storageUri``."""
        return self.uri.rstrip("/") + ("/" + key if key else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


# --------------------------------------------------------------------------------------------- local


class LocalStore(Store):
    """A directory on the local filesystem (the embedded default, and what kfp.local runs use)."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _tmp_for(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f"{TMP_MARK}{uuid.uuid4().hex}-{path.name}")

    def _write_tmp(self, path: Path, writer: Callable[[io.BufferedWriter], None]) -> Path:
        """Write through ``writer`` into a fsynced temporary file next to ``path``."""
        tmp = self._tmp_for(path)
        try:
            with open(tmp, "wb") as fh:
                writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def put_file(self, key: str, path: Path) -> None:
        """Copy a local file into the store via a temporary file and ``os.replace``."""
        dst = self._path(key)
        try:
            with open(path, "rb") as src:
                tmp = self._write_tmp(dst, lambda fh: shutil.copyfileobj(src, fh, CHUNK))
        except FileNotFoundError as exc:
            raise StoreError(f"cannot upload {path} to {self.url(key)}: file not found") from exc
        os.replace(tmp, dst)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """Write bytes atomically; ``if_absent`` uses ``os.link`` so only one writer can win."""
        dst = self._path(key)
        tmp = self._write_tmp(dst, lambda fh: fh.write(data))
        if not if_absent:
            os.replace(tmp, dst)
            return
        try:
            os.link(tmp, dst)
        except FileExistsError as exc:
            raise ObjectExistsError(f"{self.url(key)} already exists") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def get_file(self, key: str, dest: Path) -> Path:
        """Copy ``key`` to ``dest`` via a temporary file next to ``dest``."""
        src = self._path(key)
        dest = Path(dest)
        try:
            with open(src, "rb") as fh:
                tmp = self._write_tmp(dest, lambda out: shutil.copyfileobj(fh, out, CHUNK))
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"{self.url(key)} does not exist") from exc
        os.replace(tmp, dest)
        return dest

    def get_bytes(self, key: str) -> bytes:
        """Read ``key``."""
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(f"{self.url(key)} does not exist") from exc

    def stat(self, key: str) -> ObjectInfo:
        """Size and mtime of ``key``."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(f"{self.url(key)} does not exist")
        st = path.stat()
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=timezone.utc))

    def _walk(self, prefix: str) -> Iterator[Path]:
        """Files (not temporaries) under the normalised path prefix."""
        norm = _norm_prefix(prefix)
        base = self.root / norm if norm else self.root
        if base.is_file():
            yield base
            return
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not name.startswith(TMP_MARK):
                    yield Path(dirpath) / name

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Objects under a path prefix, sorted by key."""
        out = []
        for path in self._walk(prefix):
            st = path.stat()
            out.append(ObjectInfo(path.relative_to(self.root).as_posix(), st.st_size,
                                  datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)))
        return sorted(out, key=lambda o: o.key)

    def delete(self, prefix: str) -> int:
        """Delete objects under a path prefix, then the directories left empty."""
        if not prefix.strip("/"):
            raise StoreError(f"refusing to delete the whole store {self.uri}: give a prefix")
        paths = list(self._walk(prefix))
        for path in paths:
            path.unlink(missing_ok=True)
        self._prune(self.root / _norm_prefix(prefix))
        return len(paths)

    def _prune(self, top: Path) -> None:
        """Remove empty directories from ``top`` up to (not including) the root."""
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            _rmdir_if_empty(Path(dirpath))
        parent = top.parent
        while parent != self.root and self.root in parent.parents:
            if not _rmdir_if_empty(parent):
                break
            parent = parent.parent

    def copy(self, src: str, dst: str) -> None:
        """Copy within the store (atomic at the destination)."""
        src_path = self._path(src)
        if not src_path.is_file():
            raise ObjectNotFoundError(f"{self.url(src)} does not exist")
        self.put_file(dst, src_path)


def _rmdir_if_empty(path: Path) -> bool:
    """rmdir that tolerates non-empty or vanished directories; True if removed."""
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            return False
        raise
    return True


# ------------------------------------------------------------------------------------------------ S3


def _flag(value: str | None, default: bool, name: str) -> bool:
    """Parse a 0/1/true/false environment flag."""
    if value is None or value.strip() == "":
        return default
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise StoreError(f"{name} must be 0/1/true/false, got {value!r}")


def _first(env: Mapping[str, str], *names: str) -> tuple[str | None, str | None]:
    """The first non-empty variable among ``names``: (value, name)."""
    for name in names:
        if env.get(name):
            return env[name], name
    return None, None


@dataclass(frozen=True)
class S3Settings:
    """Connection settings read from the environment (a Kubernetes Secret's env); secrets not in repr.

    Names (first found wins): endpoint S3_ENDPOINT, AWS_ENDPOINT_URL, MINIO_ENDPOINT (``host:port`` or
    a URL whose scheme decides https); S3_USE_HTTPS (default 1), S3_VERIFY_SSL (default 1),
    AWS_CA_BUNDLE; region AWS_DEFAULT_REGION, AWS_REGION; keys AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    (aliases MINIO_ACCESS_KEY / MINIO_SECRET_KEY), AWS_SESSION_TOKEN. These are what KServe injects from
    the annotations serving.kserve.io/s3-endpoint, s3-usehttps, s3-region, s3-verifyssl, s3-cabundle.
    """

    endpoint: str = "s3.amazonaws.com"
    secure: bool = True
    verify_ssl: bool = True
    ca_bundle: str | None = None
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    access_key_source: str | None = None
    create_bucket: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        """Read the settings from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        raw, _ = _first(env, "S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MINIO_ENDPOINT")
        secure = _flag(env.get("S3_USE_HTTPS"), True, "S3_USE_HTTPS")
        endpoint = raw or cls.endpoint
        if raw and "://" in raw:
            parts = urlsplit(raw)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise StoreError(f"S3 endpoint {raw!r} must be host:port or an http(s):// URL")
            if parts.username or parts.password:
                raise StoreError("S3 endpoint URL must not carry credentials: use AWS_ACCESS_KEY_ID/SECRET")
            endpoint, secure = parts.netloc, parts.scheme == "https"
        access, access_src = _first(env, "AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY", "MINIO_ROOT_USER")
        secret, _ = _first(env, "AWS_SECRET_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_ROOT_PASSWORD")
        if bool(access) != bool(secret):
            raise StoreError("S3 credentials incomplete: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        region, _ = _first(env, "AWS_DEFAULT_REGION", "AWS_REGION", "S3_REGION")
        return cls(
            endpoint=endpoint, secure=secure, verify_ssl=_flag(env.get("S3_VERIFY_SSL"), True, "S3_VERIFY_SSL"),
            ca_bundle=env.get("AWS_CA_BUNDLE") or None, region=region, access_key=access, secret_key=secret,
            session_token=env.get("AWS_SESSION_TOKEN") or None, access_key_source=access_src,
            create_bucket=_flag(env.get("GLIOMA_STORE_CREATE_BUCKET"), False, "GLIOMA_STORE_CREATE_BUCKET"),
        )

    @property
    def endpoint_url(self) -> str:
        """``http(s)://host:port``: safe to print (no credentials)."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"


AUTH_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
                        "ExpiredToken", "AuthorizationHeaderMalformed"})
TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                             "RequestTimeTooSkewed", "ServerBusy"})


def _is_transient(exc: BaseException) -> bool:
    """Connection errors, timeouts, 5xx and throttling are worth retrying; nothing else is."""
    import urllib3
    from minio.error import S3Error, ServerError

    if isinstance(exc, ServerError):
        return exc.status_code >= 500
    if isinstance(exc, S3Error):
        status = exc.response.status if exc.response is not None else 0
        return exc.code in TRANSIENT_CODES or status >= 500
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


class S3Store(Store):
    """A bucket (and key prefix) on S3 or MinIO, through the ``minio`` SDK."""

    def __init__(self, bucket: str, prefix: str = "", settings: S3Settings | None = None,
                 retry: RetryPolicy | None = None, scheme: str = "s3"):
        from minio.helpers import check_bucket_name

        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            raise StoreError(f"invalid S3 bucket name {bucket!r}: {exc}") from exc
        self.bucket = bucket
        self.prefix = _norm_prefix(prefix)
        self.settings = settings or S3Settings.from_env()
        self.retry = retry or RetryPolicy.from_env()
        self.uri = f"{scheme}://{bucket}/{self.prefix}".rstrip("/")
        self._client = self._make_client()
        self._bucket_checked = False

    def _make_client(self) -> Minio:
        """A minio client with urllib3 retries off: :meth:`_call` owns retrying and its logging."""
        import urllib3
        from minio import Minio

        s = self.settings
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=s.connect_timeout, read=s.read_timeout), maxsize=10, retries=False,
            cert_reqs="CERT_REQUIRED" if s.verify_ssl else "CERT_NONE",
            ca_certs=s.ca_bundle or os.environ.get("SSL_CERT_FILE") or _certifi_where(),
        )
        return Minio(s.endpoint, access_key=s.access_key, secret_key=s.secret_key, session_token=s.session_token,
                     secure=s.secure, region=s.region, http_client=http)

    def _obj(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _where(self, key: str | None = None) -> str:
        return f"{self.url(key or '')} at {self.settings.endpoint_url}"

    def _call(self, what: str, key: str | None, fn: Callable[[], T], *, check_bucket: bool = True) -> T:
        """Run ``fn`` with retries on transient errors; map S3 errors to StoreError."""
        from minio.error import S3Error

        if check_bucket:
            self._ensure_bucket()
        recreated = False
        for attempt in range(self.retry.attempts):
            try:
                return fn()
            except S3Error as exc:
                if exc.code == "NoSuchBucket":  # vanished since the check: re-create once if allowed
                    self._bucket_checked = False
                    if check_bucket and self.settings.create_bucket and not recreated:
                        self._ensure_bucket()
                        recreated = True
                        continue
                if not _is_transient(exc):
                    raise self._s3_error(what, key, exc) from exc
                last: BaseException = exc
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                last = exc
            if attempt + 1 < self.retry.attempts:
                delay = self.retry.delay(attempt)
                log.warning("%s %s failed (%s: %s); retry %d/%d in %.2f s", what, self._where(key),
                            type(last).__name__, _short(last), attempt + 1, self.retry.attempts - 1, delay)
                time.sleep(delay)
        raise StoreError(f"{what} {self._where(key)} failed after {self.retry.attempts} attempts "
                         f"(transient error, endpoint unreachable or failing): {type(last).__name__}: "
                         f"{_short(last)}") from last

    def _s3_error(self, what: str, key: str | None, exc: Any) -> StoreError:
        """Translate a non-transient S3Error into a StoreError that says what to fix."""
        code = exc.code
        if code in AUTH_CODES:
            src = self.settings.access_key_source or "no credentials set"
            return StoreError(f"{what} {self._where(key)}: S3 refused the credentials ({code}); check the access "
                              f"key and secret (from {src} / its secret) and the bucket policy")
        if code == "NoSuchBucket":
            return self._missing_bucket()
        if code in ("NoSuchKey", "NoSuchObject"):
            return ObjectNotFoundError(f"{self.url(key or '')} does not exist")
        if code == "PreconditionFailed":
            return ObjectExistsError(f"{self.url(key or '')} already exists")
        return StoreError(f"{what} {self._where(key)}: {code}: {exc.message}")

    def _missing_bucket(self) -> StoreError:
        return StoreError(
            f"bucket {self.bucket!r} does not exist at {self.settings.endpoint_url}; this store may not create it "
            f"(set GLIOMA_STORE_CREATE_BUCKET=1 or create it, e.g. `mc mb <alias>/{self.bucket}`)")

    def _ensure_bucket(self) -> None:
        """Check the bucket once per store; create it only when allowed."""
        if self._bucket_checked:
            return
        exists = self._call("check bucket", None, lambda: self._client.bucket_exists(self.bucket), check_bucket=False)
        if not exists:
            if not self.settings.create_bucket:
                raise self._missing_bucket()
            log.info("creating bucket %s at %s", self.bucket, self.settings.endpoint_url)
            self._call("create bucket", None, self._make_bucket, check_bucket=False)
        self._bucket_checked = True

    def _make_bucket(self) -> None:
        """Create the bucket; another client creating it first is fine."""
        from minio.error import S3Error

        try:
            self._client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def put_file(self, key: str, path: Path) -> None:
        """Upload a file (multipart above 5 MiB); each retry re-reads it from the start."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"cannot upload {path} to {self.url(key)}: file not found")
        self._call("upload", key, lambda: self._client.fput_object(self.bucket, self._obj(key), str(path)))

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """PUT one object; ``if_absent`` sends ``If-None-Match: *``. A retried conditional PUT that finds
        its own bytes already there (first attempt landed, response lost) counts as success."""
        obj = self._obj(key)
        if not if_absent:
            self._call("upload", key, lambda: self._client.put_object(self.bucket, obj, io.BytesIO(data), len(data)))
            return
        headers = {"If-None-Match": "*", "Content-Type": "application/octet-stream"}
        tries = {"n": 0}

        def conditional_put() -> None:
            tries["n"] += 1
            # The public put_object() turns unknown headers into x-amz-meta-*; _put_object() sends them as is.
            self._client._put_object(self.bucket, obj, data, headers=dict(headers))

        try:
            self._call("conditional upload", key, conditional_put)
        except ObjectExistsError:
            if tries["n"] > 1 and self.get_bytes(key) == data:
                return
            raise

    def get_file(self, key: str, dest: Path) -> Path:
        """Download to ``dest`` (the SDK writes a ``.part.minio`` file and renames it)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._call("download", key, lambda: self._client.fget_object(self.bucket, self._obj(key), str(dest)))
        return dest

    def get_bytes(self, key: str) -> bytes:
        """GET one object into memory."""

        def read() -> bytes:
            resp = self._client.get_object(self.bucket, self._obj(key))
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._call("download", key, read)

    def stat(self, key: str) -> ObjectInfo:
        """HEAD one object."""
        st = self._call("stat", key, lambda: self._client.stat_object(self.bucket, self._obj(key)))
        return ObjectInfo(key, int(st.size or 0), st.last_modified or datetime.now(timezone.utc))

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """List objects under a path prefix (recursive)."""
        norm = _norm_prefix(prefix)

        def listing() -> builtins.list[ObjectInfo]:
            out = []
            for obj in self._client.list_objects(self.bucket, prefix=self.prefix + norm, recursive=True):
                if obj.is_dir or obj.object_name is None:
                    continue
                key = obj.object_name[len(self.prefix):]
                out.append(ObjectInfo(key, int(obj.size or 0), obj.last_modified or datetime.now(timezone.utc)))
            return out

        found = self._call("list", norm or None, listing)
        if norm:  # an exact object named like the prefix counts too (path semantics)
            exact = norm.rstrip("/")
            found += self._call("stat", exact, lambda: self._exact(exact))
        return sorted(found, key=lambda o: o.key)

    def _exact(self, key: str) -> builtins.list[ObjectInfo]:
        """[info] if the object ``key`` exists, else []."""
        from minio.error import S3Error

        try:
            st = self._client.stat_object(self.bucket, self._obj(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return []
            raise
        return [ObjectInfo(key, int(st.size or 0), st.last_modified or datetime.now(timezone.utc))]

    def delete(self, prefix: str) -> int:
        """Delete every object under a path prefix with batched DeleteObjects."""
        from minio.deleteobjects import DeleteObject

        if not prefix.strip("/"):
            raise StoreError(f"refusing to delete the whole store {self.uri}: give a prefix")
        keys = [o.key for o in self.list(prefix)]

        def remove() -> None:
            errors = list(self._client.remove_objects(self.bucket, [DeleteObject(self._obj(k)) for k in keys]))
            if errors:
                raise StoreError(f"delete under {self._where(prefix)}: {len(errors)} objects not deleted, "
                                 f"first: {errors[0].name}: {errors[0].code}")

        if keys:
            self._call("delete", prefix, remove)
        return len(keys)

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy (objects up to 5 GiB)."""
        from minio.commonconfig import CopySource

        source = CopySource(self.bucket, self._obj(src))
        self._call("copy", dst, lambda: self._client.copy_object(self.bucket, self._obj(dst), source))


def _certifi_where() -> str | None:
    """certifi's CA bundle (a minio dependency) if installed."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - minio depends on certifi
        return None
    return str(certifi.where())


def _short(exc: BaseException, limit: int = 200) -> str:
    """A one-line, bounded description of an exception."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------------ uri

S3_SCHEMES = ("s3", "minio")


def open_store(uri: str | Path | None = None, *, settings: S3Settings | None = None,
               retry: RetryPolicy | None = None) -> Store:
    """Open the store at ``uri`` (default: $GLIOMA_STORE or ``./registry``)."""
    text = str(uri) if uri is not None else os.environ.get("GLIOMA_STORE", "registry")
    if not text.strip():
        raise StoreError("empty store URI: give a path, file://, s3:// or minio:// URI")
    if "://" not in text:
        return LocalStore(text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if parts.username or parts.password:
        raise StoreError(f"store URI for bucket {parts.hostname!r} carries credentials; remove them and set "
                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment instead")
    if parts.query or parts.fragment:
        raise StoreError(f"store URI {text!r} must not have a query or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"file URI {text!r} names host {parts.netloc!r}; use file:///absolute/path")
        return LocalStore(parts.path)
    if scheme in S3_SCHEMES:
        bucket = parts.netloc
        if not bucket:
            raise StoreError(f"store URI {text!r} has no bucket: expected {scheme}://bucket/prefix")
        return S3Store(bucket, parts.path, settings=settings, retry=retry, scheme=scheme)
    raise StoreError(f"unsupported store URI scheme {scheme!r} in {text!r}: expected a path, file://, s3:// or minio://")
