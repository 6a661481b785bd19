"""The ``glioma`` command: one entry point, one sub-command group per stage.

Each group lives in its own module exposing ``register(subparsers)``; heavy imports happen inside the
command functions so ``glioma --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from gliomagrade import __version__
from gliomagrade.errors import GliomaError

GROUPS = ("cohort", "ingest", "preprocess", "train", "pipeline", "model", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glioma",
        description="Non-invasive glioma grading from MRI: cohorts, preprocessing, training, pipeline, serving.",
    )
    parser.add_argument("--version", action="version", version=f"gliomagrade {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in GROUPS:
        importlib.import_module(f"gliomagrade.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except GliomaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
