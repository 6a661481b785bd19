"""Predictor down -> 503, slow -> 504, and the transformer recovers when the predictor comes back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from serving_fixtures import MODEL, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _grade(url: str, case_b64: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{MODEL}:predict", timeout=60,
                      json={"instances": [case_b64], "parameters": {"cam": "none"}})


def test_predictor_down_then_slow_then_back(store_uri: str, case_b64: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    transformer = start_server("transformer", ["--model_dir", store_uri, "--predictor_host", f"127.0.0.1:{port}",
                                               "--predictor_protocol", "v2", "--predictor_request_timeout_seconds",
                                               "3"], tmp_path / "transformer.log")
    predictor = None
    try:
        down = _grade(transformer.url, case_b64)
        assert down.status_code == 503, down.text
        assert f"predictor at 127.0.0.1:{port} is unreachable" in down.json()["error"]

        predictor = start_server("predictor", ["--model_dir", store_uri], tmp_path / "predictor.log", http=port)
        back = _grade(transformer.url, case_b64)
        assert back.status_code == 200, back.text

        os.killpg(predictor.proc.pid, signal.SIGSTOP)  # alive but not answering
        try:
            slow = _grade(transformer.url, case_b64)
        finally:
            os.killpg(predictor.proc.pid, signal.SIGCONT)
        assert slow.status_code == 504, slow.text
        assert "did not answer in time" in slow.json()["error"]
        again = _grade(transformer.url, case_b64)
        assert again.status_code == 200, again.text
        metrics = httpx.get(f"{transformer.url}/metrics").text
        assert 'gliomagrade_errors_total{kind="unavailable",model="glioma"} 1.0' in metrics
        assert 'gliomagrade_errors_total{kind="predictor_timeout",model="glioma"} 1.0' in metrics
    finally:
        transformer.stop()
        if predictor is not None:
            predictor.stop()
