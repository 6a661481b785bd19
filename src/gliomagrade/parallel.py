"""Run one function over many cases in worker processes, with a progress bar and per-item failures.

A failing item never stops the batch: its exception is returned in place of its result so the caller
can report it and go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What happened to one item: its result, or the error that stopped it."""

    item: T
    result: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def map_items(
    fn: Callable[[T], R], items: Sequence[T], *, workers: int = 0, desc: str = "", disable: bool | None = None
) -> list[Outcome[T, R]]:
    """Apply ``fn`` to every item (in ``workers`` processes; 1 means in this process), keeping order."""
    workers = workers or default_workers()
    outcomes: list[Outcome[T, R] | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=desc, unit="case", disable=disable, dynamic_ncols=True)
    try:
        if workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                outcomes[i] = _call(fn, item)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
                futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
                for fut in as_completed(futures):
                    i = futures[fut]
                    exc = fut.exception()
                    outcomes[i] = Outcome(items[i], error=exc) if exc else Outcome(items[i], fut.result())
                    bar.update()
    finally:
        bar.close()
    return [o for o in outcomes if o is not None]


def _call(fn: Callable[[T], R], item: T) -> Outcome[T, R]:
    try:
        return Outcome(item, fn(item))
    except Exception as exc:  # noqa: BLE001 - reported per item by the caller
        return Outcome(item, error=exc)
