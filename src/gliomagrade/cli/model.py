"""`glioma model` sub-commands (filled in by the stage that owns them)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's sub-commands to the `glioma` parser."""
