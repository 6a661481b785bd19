"""`glioma model`: list, show, publish, download, promote, roll back and clean the model registry.

The store comes from ``--store`` or $GLIOMA_STORE (default ``./registry``): a path, ``file://``,
``s3://bucket/prefix`` or ``minio://bucket/prefix`` with S3 settings from the environment.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gliomagrade.registry import Registry, VersionInfo

AUC_KEYS = ("auc", "roc_auc", "macro_auc")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's sub-commands to the `glioma` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=os.environ.get("GLIOMA_STORE", "registry"),
                        help="registry URI: path, file://, s3://bucket/prefix, minio://bucket/prefix "
                             "(default: $GLIOMA_STORE or ./registry)")
    common.add_argument("--name", default=os.environ.get("GLIOMA_MODEL_NAME", "glioma-grade"),
                        help="model name (default: $GLIOMA_MODEL_NAME or glioma-grade)")
    group = sub.add_parser("model", help="model registry: list, show, promote, rollback, gc")
    cmds = group.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = cmds.add_parser("list", parents=[common], help="table of versions (AUC with CI, gate, promoted)")
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser("show", parents=[common], help="print a version's manifest")
    p.add_argument("version", help="version number, 'latest' or 'promoted'")
    p.set_defaults(func=cmd_show)

    p = cmds.add_parser("publish", parents=[common], help="publish a directory of files as the next version")
    p.add_argument("directory", type=Path, help="files to publish (e.g. model.onnx, config.pbtxt)")
    p.add_argument("--manifest", type=Path, required=True, help="JSON file with the caller's manifest fields")
    p.set_defaults(func=cmd_publish)

    p = cmds.add_parser("download", parents=[common], help="download a version, verifying every checksum")
    p.add_argument("version", help="version number, 'latest' or 'promoted'")
    p.add_argument("dest", type=Path, help="destination directory")
    p.set_defaults(func=cmd_download)

    p = cmds.add_parser("promote", parents=[common], help="point 'promoted' at a version")
    p.add_argument("version", help="version number or 'latest'")
    p.add_argument("--reason", default="", help="why (kept in the history)")
    p.add_argument("--force", action="store_true", help="promote even if the version failed its gate")
    p.set_defaults(func=cmd_promote)

    p = cmds.add_parser("rollback", parents=[common], help="re-promote the previously promoted version")
    p.add_argument("--reason", default="", help="why (kept in the history)")
    p.set_defaults(func=cmd_rollback)

    p = cmds.add_parser("history", parents=[common], help="promotion and rollback log")
    p.set_defaults(func=cmd_history)

    p = cmds.add_parser("gc", parents=[common], help="remove stale staging uploads and uncommitted versions")
    p.add_argument("--min-age-hours", type=float, default=1.0,
                   help="only remove leftovers older than this (default 1 h: never races a live publish)")
    p.set_defaults(func=cmd_gc)


def _registry(args: argparse.Namespace) -> Registry:
    from gliomagrade.registry import Registry
    from gliomagrade.store import open_store

    return Registry(open_store(args.store), args.name)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _auc(info: VersionInfo) -> str:
    """``0.912 [0.871, 0.948]`` from the first AUC-like metric, or '-'."""
    for key in AUC_KEYS:
        m = info.manifest.metrics.get(key)
        if m is not None:
            ci = f" [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if m.ci_low is not None or m.ci_high is not None else ""
            return _fmt(m.value) + ci
    return "-"


def cmd_list(args: argparse.Namespace) -> int:
    """Print the version table."""
    from rich.console import Console
    from rich.table import Table

    reg = _registry(args)
    versions = reg.list_versions()
    table = Table(title=f"{reg.name} @ {reg.store.uri}")
    for col in ("version", "created (UTC)", "AUC [95% CI]", "gate", "files", "promoted"):
        table.add_column(col)
    for v in versions:
        gate = v.manifest.gate
        table.add_row(str(v.version), v.created.strftime("%Y-%m-%d %H:%M:%S"), _auc(v),
                      "-" if gate is None else ("[green]pass[/]" if gate.passed else "[red]fail[/]"),
                      str(len(v.manifest.files)), "[bold]* promoted[/]" if v.promoted else "")
    Console().print(table if versions else f"no versions of {reg.name} in {reg.store.uri}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a version's manifest as JSON."""
    info = _registry(args).show(args.version)
    print(json.dumps({"uri": info.uri, "promoted": info.promoted,
                      "manifest": json.loads(info.manifest.to_json())}, indent=2))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish a directory with a manifest JSON file."""
    from gliomagrade.errors import StoreError

    try:
        fields = json.loads(args.manifest.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read manifest fields from {args.manifest}: {exc}") from exc
    info = _registry(args).publish(args.directory, fields)
    print(f"published {info.model_name} version {info.version}: {info.uri}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Download and verify a version."""
    dest = _registry(args).download(args.version, args.dest)
    print(f"downloaded to {dest}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote a version."""
    event = _registry(args).promote(args.version, args.reason, force=args.force)
    print(f"promoted version {event.version} (previous: {event.previous})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Roll back to the previously promoted version."""
    event = _registry(args).rollback(args.reason)
    print(f"rolled back to version {event.version} (was: {event.previous})")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Print the promotion log."""
    from rich.console import Console
    from rich.table import Table

    reg = _registry(args)
    table = Table(title=f"promotion history of {reg.name}")
    for col in ("#", "time (UTC)", "action", "version", "previous", "by", "reason"):
        table.add_column(col)
    for e in reg.history():
        table.add_row(str(e.seq), e.time.strftime("%Y-%m-%d %H:%M:%S"), e.action, str(e.version),
                      str(e.previous or "-"), e.actor, e.reason)
    Console().print(table)
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove stale staging uploads and uncommitted version data."""
    report = _registry(args).gc(timedelta(hours=args.min_age_hours))
    print(f"removed {len(report.staging)} staging uploads and data of {len(report.uncommitted_versions)} "
          f"uncommitted versions ({report.objects_deleted} objects)")
    return 0
