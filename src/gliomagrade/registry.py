"""Model registry over a :class:`~gliomagrade.store.Store`: versioned, checksummed, atomically published.

Layout under the store root (``<m>`` is the model name)::

    <m>/staging/<uuid>/<files>            uploads in flight (invisible; ``gc`` removes stale ones)
    <m>/claims/<v>.json                   version number ``v`` taken (conditional create)
    <m>/versions/<v>/<files>              the version's files (e.g. model.onnx, config.pbtxt)
    <m>/versions/<v>/manifest.json        COMMIT POINT: written last; a version exists iff this exists
    <m>/promoted.json                     pointer {version, previous, reason, time}: one PUT / os.replace
    <m>/history/<n>.json                  append-only promotion log, n = 1, 2, ... (conditional create)

``publish`` uploads to staging, verifies sizes, claims the next version number with a conditional
create, copies staging into ``versions/<v>/`` (server-side on S3), verifies again, then writes the
manifest with a conditional create. Readers list only versions whose manifest exists, so a
half-written version is never visible. See docs/registry.md for the guarantees per backend.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from tqdm import tqdm

from gliomagrade import __version__
from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import StoreError
from gliomagrade.store import ObjectExistsError, ObjectNotFoundError, Store, check_key, sha256_file

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "glioma-grade"
MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
MODEL_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
REGISTRY_FIELDS = ("schema_version", "model_name", "version", "created", "files")
CLAIM_TRIES = 20
Progress = Callable[[str, str], None]
"""``on_progress(stage, detail)`` with stage in uploaded/staged/claimed/copied/committed."""


# ------------------------------------------------------------------------------------------ manifest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metric(_Strict):
    """A metric with its confidence interval (``null`` when undefined); a bare number is accepted."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: Any) -> Any:
        return {"value": data} if isinstance(data, (int, float)) and not isinstance(data, bool) else data

    @field_validator("value", "ci_low", "ci_high")
    @classmethod
    def _nan_to_none(cls, v: float | None) -> float | None:
        return None if v is None or math.isnan(v) else v


class GateDecision(BaseModel):
    """The evaluation gate's verdict: passed or not, with one reason per criterion."""

    model_config = ConfigDict(extra="allow")
    passed: bool
    reasons: list[str] = []
    criteria: list[dict[str, Any]] = []


class TensorSpec(_Strict):
    """One ONNX tensor: name, dtype, shape (``-1`` for a dynamic dimension)."""

    name: str
    dtype: str
    shape: list[int]


class HeadInfo(BaseModel):
    """The classifier head that CAM needs: GAP + linear on ``feature_output`` maps of ``in_features``."""

    model_config = ConfigDict(extra="allow")
    kind: str = "gap-linear"
    in_features: int = Field(gt=0)
    num_classes: int = Field(gt=1)
    feature_output: str = "features"


class Histogram(_Strict):
    """A reference distribution for drift: ``len(edges) == len(counts) + 1``, edges increasing."""

    edges: list[float]
    counts: list[float]

    @model_validator(mode="after")
    def _shape(self) -> Histogram:
        if len(self.edges) < 2 or len(self.edges) != len(self.counts) + 1:
            raise ValueError(f"need len(edges) == len(counts) + 1 >= 2, got {len(self.edges)} edges, "
                             f"{len(self.counts)} counts")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)) or any(c < 0 for c in self.counts):
            raise ValueError("edges must increase strictly and counts must be >= 0")
        return self


class CodeVersion(BaseModel):
    """The code that produced the model: package version and git commit when known."""

    model_config = ConfigDict(extra="allow")
    gliomagrade: str = __version__
    git_commit: str | None = None


class FileEntry(_Strict):
    """A published file's checksum and size."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class ModelManifest(_Strict):
    """The JSON written as ``versions/<v>/manifest.json``: what serving and monitoring read.

    The registry fills ``schema_version, model_name, version, created, files`` (and ``code`` when the
    caller omits it); the caller gives everything else. Unknown top-level keys are refused (typos);
    free-form additions go under ``extra``.
    """

    schema_version: int = SCHEMA_VERSION
    model_name: str
    version: int = Field(ge=1)
    created: datetime
    files: dict[str, FileEntry]
    code: CodeVersion = CodeVersion()
    class_names: list[str] = Field(min_length=2)
    sequences: list[str] = list(SEQUENCES)
    input: TensorSpec
    outputs: list[TensorSpec] = []
    temperature: float = Field(gt=0)
    threshold: float | None = Field(default=None, ge=0, le=1)
    head: HeadInfo | None = None
    metrics: dict[str, Metric] = {}
    gate: GateDecision | None = None
    cohort_fingerprint: str | None = None
    train: dict[str, Any] = {}
    preprocess: dict[str, Any] = {}
    reference: dict[str, Histogram] = {}
    qc_ranges: dict[str, tuple[float, float]] = {}
    extra: dict[str, Any] = {}

    @field_validator("files")
    @classmethod
    def _safe_paths(cls, v: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for rel in v:  # download() writes dest/<rel>: no absolute paths, no '..'
            try:
                check_key(rel)
            except StoreError as exc:
                raise ValueError(str(exc)) from exc
        return v

    @field_validator("sequences")
    @classmethod
    def _known_sequences(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in SEQUENCES]
        if unknown or not v or len(set(v)) != len(v):
            raise ValueError(f"sequences must be distinct names from {SEQUENCES}, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be distinct, got {self.class_names}")
        bad = {k: v for k, v in self.qc_ranges.items() if not v[0] <= v[1]}
        if bad:
            raise ValueError(f"qc_ranges must be (low, high) with low <= high, got {bad}")
        if self.head is not None and self.head.num_classes != len(self.class_names):
            raise ValueError(f"head.num_classes is {self.head.num_classes} but there are "
                             f"{len(self.class_names)} class_names")
        return self

    def to_json(self) -> bytes:
        """Stable, human-readable JSON bytes."""
        return (self.model_dump_json(indent=2) + "\n").encode()


@dataclass(frozen=True)
class VersionInfo:
    """A committed version: its manifest and where its files live."""

    model_name: str
    version: int
    created: datetime
    manifest: ModelManifest
    uri: str
    promoted: bool = False

    def __str__(self) -> str:
        return str(self.version)


@dataclass(frozen=True)
class PromotionEvent:
    """One entry of the promotion history (also the content of ``promoted.json``)."""

    action: Literal["promote", "rollback"]
    version: int
    previous: int | None
    reason: str
    time: datetime
    actor: str = ""
    seq: int = 0

    def to_json(self) -> bytes:
        """JSON bytes with an ISO UTC time."""
        data = {**self.__dict__, "time": self.time.isoformat()}
        return (json.dumps(data, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> PromotionEvent:
        """Parse an event; StoreError naming ``source`` if it is malformed."""
        try:
            data = json.loads(raw)
            data["time"] = datetime.fromisoformat(data["time"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"malformed promotion record {source}: {exc}") from exc


@dataclass
class GcReport:
    """What ``gc`` removed: stale staging uploads and data of versions that never committed."""

    staging: list[str] = field(default_factory=list)
    uncommitted_versions: list[int] = field(default_factory=list)
    objects_deleted: int = 0


# ------------------------------------------------------------------------------------------ registry


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _git_commit() -> str | None:
    """HEAD of the git checkout holding this package, if any (None in a wheel/container)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def collect_files(files: Mapping[str, Path] | Path | str) -> dict[str, Path]:
    """Map relative POSIX paths to local files, from a mapping or every file under a directory."""
    if isinstance(files, (str, Path)):
        root = Path(files)
        if not root.is_dir():
            raise StoreError(f"cannot publish {root}: not a directory")
        files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
    out: dict[str, Path] = {}
    for rel, path in files.items():
        rel = check_key(PurePosixPath(rel).as_posix())
        if rel == MANIFEST:
            raise StoreError(f"cannot publish a file named {MANIFEST}: the registry writes it")
        if not Path(path).is_file():
            raise StoreError(f"cannot publish {rel}: {path} is not a file")
        out[rel] = Path(path)
    if not out:
        raise StoreError("cannot publish an empty set of files")
    return out


class Registry:
    """Versions, promotion and rollback of one model in a store."""

    def __init__(self, store: Store, model_name: str = DEFAULT_MODEL_NAME):
        if not MODEL_NAME_RE.match(model_name):
            raise StoreError(f"invalid model name {model_name!r}: use lower-case letters, digits, '.', '_', '-' "
                             "(max 63, like a Kubernetes/Triton name)")
        self.store = store
        self.name = model_name

    # keys
    def _k(self, *parts: object) -> str:
        return "/".join([self.name, *map(str, parts)])

    def _manifest_key(self, version: int) -> str:
        return self._k("versions", version, MANIFEST)

    def version_uri(self, version: int) -> str:
        """URI of a version's folder (a KServe ``storageUri`` points here)."""
        return self.store.url(self._k("versions", version))

    # -------------------------------------------------------------------------------------- publish

    def publish(self, files: Mapping[str, Path] | Path | str, manifest: Mapping[str, Any], *,
                on_progress: Progress | None = None) -> VersionInfo:
        """Upload ``files`` and ``manifest`` (caller fields) as the next version; atomic for readers."""
        notify = on_progress or (lambda stage, detail: None)
        local = collect_files(files)
        entries = {rel: FileEntry(sha256=sha256_file(p), size=p.stat().st_size)
                   for rel, p in tqdm(local.items(), desc="checksum", unit="file", disable=None, leave=False)}
        draft = self._draft(manifest, entries)
        staging = self._k("staging", uuid.uuid4().hex)
        try:
            for rel, path in tqdm(local.items(), desc=f"upload {self.name}", unit="file", disable=None):
                self.store.put_file(f"{staging}/{rel}", path)
                notify("uploaded", rel)
            self._verify_sizes(staging, entries, "staged")
            notify("staged", staging)
            version = self._claim(staging)
            notify("claimed", str(version))
            final = self._k("versions", version)
            for rel in entries:
                self.store.copy(f"{staging}/{rel}", f"{final}/{rel}")
                notify("copied", rel)
            self._verify_sizes(final, entries, f"version {version}")
            doc = draft.model_copy(update={"version": version, "created": _utcnow()})
            self._commit(version, doc.to_json())
            notify("committed", str(version))
        finally:
            self._discard(staging)
        log.info("published %s version %d (%d files) to %s", self.name, version, len(entries), self.version_uri(version))
        return self._info(doc)

    def _draft(self, fields: Mapping[str, Any], entries: dict[str, FileEntry]) -> ModelManifest:
        """Validate the caller's fields (with placeholder version/time) before uploading anything."""
        taken = sorted(set(fields) & set(REGISTRY_FIELDS))
        if taken:
            raise StoreError(f"manifest fields {taken} are set by the registry; remove them from the caller's manifest")
        data = dict(fields)
        data.setdefault("code", {"gliomagrade": __version__, "git_commit": _git_commit()})
        try:
            return ModelManifest.model_validate(
                {**data, "model_name": self.name, "version": 1, "created": _utcnow(), "files": entries})
        except ValidationError as exc:
            raise StoreError(f"invalid manifest for model {self.name}: {exc}") from exc

    def _verify_sizes(self, prefix: str, entries: dict[str, FileEntry], what: str) -> None:
        """Every file under ``prefix`` exists with the expected size."""
        for rel, entry in entries.items():
            try:
                size = self.store.stat(f"{prefix}/{rel}").size
            except ObjectNotFoundError as exc:
                raise StoreError(f"{what} file {rel} is missing from {self.store.url(prefix)} after upload "
                                 "(store restarted or cleaned meanwhile?)") from exc
            if size != entry.size:
                raise StoreError(f"{what} file {rel} is {size} bytes in {self.store.url(prefix)}, expected {entry.size}")

    def _claim(self, staging: str) -> int:
        """Take the next version number with a conditional create; read back to catch lost races."""
        token = json.dumps({"staging": staging, "time": _utcnow().isoformat()}).encode()
        for _ in range(CLAIM_TRIES):
            version = self._highest_taken() + 1
            key = self._k("claims", f"{version}.json")
            try:
                self.store.put_bytes(key, token, if_absent=True)
            except ObjectExistsError:
                continue
            if self.store.get_bytes(key) == token:  # a server ignoring If-None-Match lets a later writer win
                return version
            log.warning("claim of %s version %d was overwritten by another publisher; trying the next", self.name, version)
        raise StoreError(f"could not claim a version of {self.name} in {self.store.uri} after {CLAIM_TRIES} tries "
                         "(too many concurrent publishers?)")

    def _commit(self, version: int, manifest: bytes) -> None:
        """Write the manifest (conditional create) and read it back: the version is now visible."""
        key = self._manifest_key(version)
        try:
            self.store.put_bytes(key, manifest, if_absent=True)
        except ObjectExistsError as exc:
            raise StoreError(f"{self.store.url(key)} appeared while publishing (another publisher took version "
                             f"{version}); nothing was committed, publish again") from exc
        if self.store.get_bytes(key) != manifest:
            raise StoreError(f"{self.store.url(key)} was overwritten by another publisher right after the commit "
                             "(the S3 server ignores If-None-Match); check that version's checksums")

    def _highest_taken(self) -> int:
        """The largest version number claimed or committed (0 if none)."""
        found = [0]
        for prefix, pattern in (("claims", r"(\d+)\.json"), ("versions", rf"(\d+)/{MANIFEST}")):
            regex = re.compile(re.escape(self._k(prefix)) + "/" + pattern + "$")
            found += [int(m.group(1)) for o in self.store.list(self._k(prefix)) if (m := regex.match(o.key))]
        return max(found)

    def _discard(self, staging: str) -> None:
        """Best-effort removal of a staging prefix (gc removes what this cannot)."""
        try:
            self.store.delete(staging)
        except StoreError as exc:
            log.warning("could not remove staging %s (%s); `glioma model gc` will", self.store.url(staging), exc)

    # ---------------------------------------------------------------------------------------- read

    def _load(self, version: int) -> ModelManifest:
        key = self._manifest_key(version)
        raw = self.store.get_bytes(key)
        try:
            return ModelManifest.model_validate_json(raw)
        except ValidationError as exc:
            raise StoreError(f"manifest {self.store.url(key)} is invalid: {exc}") from exc

    def _info(self, manifest: ModelManifest, promoted: int | None = None) -> VersionInfo:
        return VersionInfo(self.name, manifest.version, manifest.created, manifest, self.version_uri(manifest.version),
                           promoted=manifest.version == promoted)

    def version_numbers(self) -> list[int]:
        """Committed versions (those whose manifest exists), ascending."""
        regex = re.compile(re.escape(self._k("versions")) + rf"/(\d+)/{MANIFEST}$")
        return sorted(int(m.group(1)) for o in self.store.list(self._k("versions")) if (m := regex.match(o.key)))

    def list_versions(self) -> list[VersionInfo]:
        """Every committed version, ascending, with the promoted one marked."""
        pointer = self.promoted()
        current = pointer.version if pointer else None
        return [self._info(self._load(v), current) for v in self.version_numbers()]

    def resolve(self, ref: int | str | VersionInfo) -> VersionInfo:
        """A version by number, ``"latest"`` or ``"promoted"`` (a VersionInfo is re-read by number)."""
        if isinstance(ref, VersionInfo):
            ref = ref.version
        pointer = self.promoted()
        current = pointer.version if pointer else None
        text = str(ref).strip().lower()
        if text == "promoted":
            if current is None:
                raise StoreError(f"model {self.name} has no promoted version in {self.store.uri}; "
                                 "run `glioma model promote VERSION`")
            version = current
        elif text == "latest":
            numbers = self.version_numbers()
            if not numbers:
                raise StoreError(f"model {self.name} has no versions in {self.store.uri}")
            version = numbers[-1]
        elif text.isdigit() and int(text) > 0:
            version = int(text)
        else:
            raise StoreError(f"version must be a positive integer, 'latest' or 'promoted', got {ref!r}")
        try:
            return self._info(self._load(version), current)
        except ObjectNotFoundError as exc:
            have = ", ".join(map(str, self.version_numbers())) or "none"
            raise StoreError(f"model {self.name} has no version {version} in {self.store.uri} "
                             f"(committed versions: {have})") from exc

    def show(self, ref: int | str | VersionInfo) -> VersionInfo:
        """The version ``ref`` (number, ``latest`` or ``promoted``) with its manifest."""
        return self.resolve(ref)

    def download(self, ref: int | str | VersionInfo, dest: Path | str) -> Path:
        """Fetch a version's files and manifest into ``dest``, verifying every file's sha256 and size."""
        info = self.resolve(ref)
        dest = Path(dest)
        prefix = self._k("versions", info.version)
        for rel, entry in tqdm(info.manifest.files.items(), desc=f"download {self.name} v{info.version}",
                               unit="file", disable=None):
            target = dest.joinpath(*rel.split("/"))
            self.store.get_file(f"{prefix}/{rel}", target)
            found, size = sha256_file(target), target.stat().st_size
            if found != entry.sha256 or size != entry.size:
                target.unlink(missing_ok=True)
                raise StoreError(f"checksum mismatch for {rel} of {self.name} version {info.version} "
                                 f"({self.store.url(prefix + '/' + rel)}): found sha256 {found[:12]}... ({size} B), "
                                 f"manifest says {entry.sha256[:12]}... ({entry.size} B)")
        # written last and atomically: another process downloading into the same folder never reads half a file
        tmp = dest / f".{MANIFEST}.{uuid.uuid4().hex}"
        tmp.write_bytes(info.manifest.to_json())
        os.replace(tmp, dest / MANIFEST)
        return dest

    # ------------------------------------------------------------------------------------ promotion

    def promoted(self) -> PromotionEvent | None:
        """The current pointer, or None if nothing was ever promoted."""
        key = self._k("promoted.json")
        try:
            return PromotionEvent.from_json(self.store.get_bytes(key), self.store.url(key))
        except ObjectNotFoundError:
            return None

    def _history_keys(self) -> list[tuple[int, str]]:
        """(sequence number, key) of every history entry, in order."""
        regex = re.compile(re.escape(self._k("history")) + r"/(\d+)\.json$")
        return sorted((int(m.group(1)), o.key) for o in self.store.list(self._k("history")) if (m := regex.match(o.key)))

    def _last_seq(self) -> int:
        keys = self._history_keys()
        return keys[-1][0] if keys else 0

    def history(self) -> list[PromotionEvent]:
        """Every promotion and rollback, oldest first."""
        return [PromotionEvent.from_json(self.store.get_bytes(k), self.store.url(k)) for _, k in self._history_keys()]

    def promote(self, ref: int | str | VersionInfo, reason: str = "", *, force: bool = False) -> PromotionEvent:
        """Point ``promoted.json`` at a version (refused if its gate failed, unless ``force``)."""
        info = self.resolve(ref)
        gate = info.manifest.gate
        if gate is not None and not gate.passed and not force:
            raise StoreError(f"{self.name} version {info.version} failed its evaluation gate "
                             f"({'; '.join(gate.reasons) or 'no reasons recorded'}); use --force to promote anyway")
        current = self.promoted()
        if current is not None and current.version == info.version:
            log.info("%s version %d is already promoted", self.name, info.version)
            return current
        return self._record("promote", info.version, current, reason)

    def rollback(self, reason: str = "") -> PromotionEvent:
        """Re-promote the version that was promoted before the current one (walks back the history)."""
        stack = promotion_stack(self.history())
        current = self.promoted()
        if current is None or not stack:
            raise StoreError(f"model {self.name} has no promoted version in {self.store.uri}: nothing to roll back")
        if stack[-1] != current.version:
            raise StoreError(f"{self.store.url(self._k('promoted.json'))} points at version {current.version} but the "
                             f"history ends at {stack[-1]}; repair with `glioma model promote {stack[-1]}`")
        if len(stack) < 2:
            raise StoreError(f"model {self.name} has no earlier promoted version to roll back to "
                             f"(version {current.version} is the first in the promotion history)")
        target = self.resolve(stack[-2])
        return self._record("rollback", target.version, current, reason)

    def _record(self, action: Literal["promote", "rollback"], version: int, current: PromotionEvent | None,
                reason: str) -> PromotionEvent:
        """Append the history event (conditional create of the next number), then move the pointer."""
        for attempt in range(CLAIM_TRIES):
            if attempt:  # another writer took the number: the pointer may have moved too
                current = self.promoted()
            seq = self._last_seq() + 1
            event = PromotionEvent(action, version, current.version if current else None, reason, _utcnow(),
                                   _actor(), seq)
            try:
                self.store.put_bytes(self._k("history", f"{seq:08d}.json"), event.to_json(), if_absent=True)
            except ObjectExistsError:
                continue
            self.store.put_bytes(self._k("promoted.json"), event.to_json())
            log.info("%s %s version %d (previous %s): %s", action, self.name, version, event.previous, reason or "-")
            return event
        raise StoreError(f"could not append to the promotion history of {self.name}: too many concurrent writers")

    # ------------------------------------------------------------------------------------------- gc

    def gc(self, min_age: timedelta = timedelta(hours=1)) -> GcReport:
        """Delete staging uploads and uncommitted version data older than ``min_age``."""
        report = GcReport()
        cutoff = _utcnow() - min_age
        groups: dict[str, datetime] = {}
        for obj in self.store.list(self._k("staging")):
            prefix = "/".join(obj.key.split("/")[:3])
            groups[prefix] = max(groups.get(prefix, obj.modified), obj.modified)
        for prefix, newest in sorted(groups.items()):
            if newest <= cutoff:
                report.objects_deleted += self.store.delete(prefix)
                report.staging.append(prefix)
        committed = set(self.version_numbers())
        regex = re.compile(re.escape(self._k("claims")) + r"/(\d+)\.json$")
        for obj in self.store.list(self._k("claims")):
            m = regex.match(obj.key)
            if m and int(m.group(1)) not in committed and obj.modified <= cutoff:
                # the claim stays: the number is burnt, so versions keep increasing
                report.objects_deleted += self.store.delete(self._k("versions", int(m.group(1))))
                report.uncommitted_versions.append(int(m.group(1)))
        return report


def promotion_stack(events: list[PromotionEvent]) -> list[int]:
    """Replay the history: promote pushes, rollback pops; the top is the current version."""
    stack: list[int] = []
    for event in events:
        if event.action == "promote":
            stack.append(event.version)
        elif stack:
            stack.pop()
    return stack


def _actor() -> str:
    """Who promoted (the OS user; in a pod, the container user)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def triton_storage_uri(registry_uri: str, model_name: str, version: int | str) -> str:
    """URI of a version's folder for a KServe ``storageUri``; ``promoted``/``latest`` are resolved first."""
    from gliomagrade.store import open_store

    store = open_store(registry_uri)
    registry = Registry(store, model_name)
    text = str(version).strip()
    number = int(text) if text.isdigit() else registry.resolve(text).version
    return registry.version_uri(number)
