"""8 concurrent clients for a bounded time: no errors, bounded transformer memory."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from serving_fixtures import MODEL, Server

from gliomagrade.serving.client import v2_binary_body

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLIENTS = 8
DURATION_S = 15.0
RSS_GROWTH_LIMIT_MB = 300.0


def test_eight_concurrent_clients(transformer: Server, case_bytes: dict[str, bytes]) -> None:
    body, headers = v2_binary_body(case_bytes, "nifti")
    url = f"{transformer.url}/v2/models/{MODEL}/infer"
    process = psutil.Process(transformer.proc.pid)
    assert httpx.post(url, content=body, headers=headers, timeout=60).status_code == 200  # warm-up
    rss_before = process.memory_info().rss / 2**20

    def client(_: int) -> list[int]:
        codes = []
        deadline = time.monotonic() + DURATION_S
        with httpx.Client(timeout=120) as http:
            while time.monotonic() < deadline:
                codes.append(http.post(url, content=body, headers=headers).status_code)
        return codes

    with ThreadPoolExecutor(CLIENTS) as pool:
        codes = [c for result in pool.map(client, range(CLIENTS)) for c in result]
    rss_after = process.memory_info().rss / 2**20
    assert codes and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    assert len(codes) >= CLIENTS
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_MB, (rss_before, rss_after)
    metrics = httpx.get(f"{transformer.url}/metrics").text
    assert 'gliomagrade_in_flight_requests{server="transformer"} 0.0' in metrics
