"""Exceptions that name the input at fault; adapters map them to exit codes / HTTP statuses."""

from __future__ import annotations


class GliomaError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(GliomaError):
    """Bad user input (image, table, request). ``subject``/``source`` say which one."""

    def __init__(self, reason: str, *, subject: str | None = None, source: str | None = None):
        self.reason = reason
        self.subject = subject
        self.source = source
        where = ", ".join(x for x in (f"case {subject}" if subject else "", f"{source}" if source else "") if x)
        super().__init__(f"{where}: {reason}" if where else reason)


class ImageError(InputError):
    """An image that cannot be read or fails validation (not 3D, not finite, empty...)."""


class PreprocessError(GliomaError):
    """Preprocessing failed for a case (registration diverged, empty brain mask...)."""

    def __init__(self, reason: str, *, subject: str | None = None, stage: str | None = None):
        self.reason, self.subject, self.stage = reason, subject, stage
        prefix = f"case {subject}" if subject else "preprocess"
        super().__init__(f"{prefix} [{stage or 'preprocess'}]: {reason}")


class ConfigError(GliomaError):
    """Invalid configuration or profile."""


class StoreError(GliomaError):
    """Artifact store / registry failure (missing version, checksum mismatch, auth)."""
