"""Drift of served predictions and inputs against the reference distribution stored with a model version.

A reference is a histogram (bin edges + counts) computed at export time on the training/OOF data, e.g.
the predicted high-grade probability or the t1ce brain mean intensity before normalisation. At serving,
a sliding window of the most recent values is compared with it by

- the population stability index, ``PSI = sum_i (p_i - q_i) * ln(p_i / q_i)`` over the reference bins
  (p: window share, q: reference share; both floored at ``eps`` so empty bins stay finite). Rule of thumb:
  < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift;
- the Kolmogorov-Smirnov statistic ``sup |F_window - F_reference|`` with the reference CDF linear within
  each bin (scipy's one-sample KS test).

Plain domain code: no kserve, no prometheus; the serving adapter exports the numbers as gauges.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

EPS = 1e-4


@dataclass(frozen=True)
class ReferenceHistogram:
    """A reference distribution as a histogram: ``len(edges) == len(counts) + 1``, edges increasing."""

    edges: tuple[float, ...]
    counts: tuple[float, ...]

    def __post_init__(self) -> None:
        edges, counts = np.asarray(self.edges, float), np.asarray(self.counts, float)
        if edges.ndim != 1 or len(edges) < 2 or len(edges) != len(counts) + 1:
            raise ValueError(f"reference histogram needs len(edges) == len(counts) + 1 >= 2, "
                             f"got {len(edges)} edges and {len(counts)} counts")
        if not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
            raise ValueError("reference histogram edges must be finite and strictly increasing")
        if np.any(counts < 0) or counts.sum() <= 0:
            raise ValueError("reference histogram counts must be >= 0 with a positive total")

    @classmethod
    def from_values(cls, values: Sequence[float], bins: int | Sequence[float] = 10,
                    value_range: tuple[float, float] | None = None) -> ReferenceHistogram:
        """Histogram ``values`` (e.g. OOF probabilities at export time) into a reference."""
        counts, edges = np.histogram(np.asarray(values, float), bins=bins, range=value_range)
        return cls(tuple(float(e) for e in edges), tuple(float(c) for c in counts))

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> ReferenceHistogram:
        """Read ``{"edges": [...], "counts": [...]}`` (the manifest's JSON form)."""
        return cls(tuple(float(e) for e in data["edges"]), tuple(float(c) for c in data["counts"]))

    def to_dict(self) -> dict[str, list[float]]:
        """The JSON form stored in a model manifest."""
        return {"edges": list(self.edges), "counts": list(self.counts)}

    @property
    def shares(self) -> np.ndarray:
        """Share of the reference in each bin (sums to 1)."""
        counts = np.asarray(self.counts, float)
        return counts / counts.sum()

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Reference CDF, linear inside each bin, 0 below the first edge and 1 above the last."""
        cumulative = np.concatenate([[0.0], np.cumsum(self.shares)])
        return np.interp(np.asarray(x, float), np.asarray(self.edges, float), cumulative, left=0.0, right=1.0)


def window_shares(values: np.ndarray, reference: ReferenceHistogram) -> np.ndarray:
    """Share of ``values`` in each reference bin; values outside the edges count in the end bins."""
    edges = np.asarray(reference.edges, float)
    clipped = np.clip(np.asarray(values, float), edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=edges)
    return counts / max(len(values), 1)


def psi(values: Sequence[float], reference: ReferenceHistogram, eps: float = EPS) -> float:
    """Population stability index of ``values`` against ``reference`` (0 = identical bin shares)."""
    arr = np.asarray(values, float)
    if arr.size == 0:
        raise ValueError("PSI needs at least one value")
    p = np.maximum(window_shares(arr, reference), eps)
    q = np.maximum(reference.shares, eps)
    return float(np.sum((p - q) * np.log(p / q)))


def ks_statistic(values: Sequence[float], reference: ReferenceHistogram) -> float:
    """One-sample Kolmogorov-Smirnov statistic of ``values`` against the reference CDF."""
    arr = np.asarray(values, float)
    if arr.size == 0:
        raise ValueError("KS needs at least one value")
    return float(stats.ks_1samp(arr, reference.cdf).statistic)


class DriftMonitor:
    """Sliding windows of recent values per feature, compared with each feature's reference histogram.

    Thread-safe (the serving adapter updates it from request handlers). A feature reports no
    statistic until ``min_count`` values have arrived, so a handful of requests never raises an alarm.
    """

    def __init__(self, references: Mapping[str, ReferenceHistogram], window: int = 500, min_count: int = 30):
        if window < 1 or min_count < 1:
            raise ValueError(f"window and min_count must be >= 1, got {window} and {min_count}")
        self.references = dict(references)
        self.window = window
        self.min_count = min(min_count, window)
        self._values: dict[str, deque[float]] = {k: deque(maxlen=window) for k in self.references}
        self._lock = threading.Lock()

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.references)

    def update(self, values: Mapping[str, float]) -> None:
        """Add one observation per known feature; unknown or non-finite values are ignored."""
        with self._lock:
            for name, value in values.items():
                if name in self._values and np.isfinite(value):
                    self._values[name].append(float(value))

    def extend(self, name: str, values: Iterable[float]) -> None:
        """Add many observations of one feature."""
        for v in values:
            self.update({name: v})

    def count(self, name: str) -> int:
        with self._lock:
            return len(self._values[name])

    def statistics(self) -> dict[str, dict[str, float]]:
        """``{feature: {"psi": .., "ks": .., "n": ..}}`` for every feature with at least ``min_count`` values."""
        with self._lock:
            snapshot = {k: np.asarray(v, float) for k, v in self._values.items()}
        out: dict[str, dict[str, float]] = {}
        for name, arr in snapshot.items():
            if arr.size >= self.min_count:
                ref = self.references[name]
                out[name] = {"psi": psi(arr, ref), "ks": ks_statistic(arr, ref), "n": float(arr.size)}
        return out
