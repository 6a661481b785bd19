"""Predictor down -> 503, slow -> 504, and the transformer recovers when the predictor comes back."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from serving_fixtures import MODEL, free_port, start_server

from gliomagrade.serving.limits import PredictorTimeout, PredictorUnavailable
from gliomagrade.serving.transformer import _predictor_error


def _grade(url: str, case_b64: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{MODEL}:predict", timeout=60,
                      json={"instances": [case_b64], "parameters": {"cam": "none"}})


@pytest.mark.integration
@pytest.mark.slow
def test_grpc_predictor_down_then_back_then_slow_then_back(store_uri: str, case_b64: dict[str, str],
                                                           tmp_path: Path) -> None:
    """The transformer talks gRPC to the predictor here (the session stack uses REST binary tensors)."""
    http, grpc = free_port(), free_port()
    transformer = start_server("transformer", ["--model_dir", store_uri, "--predictor_host", f"127.0.0.1:{grpc}",
                                               "--predictor_protocol", "grpc-v2",
                                               "--predictor_request_timeout_seconds", "3"],
                               tmp_path / "transformer.log")
    predictor = None
    try:
        down = _grade(transformer.url, case_b64)
        assert down.status_code == 503, down.text
        assert f"predictor at 127.0.0.1:{grpc} is unreachable" in down.json()["error"]

        predictor = start_server("predictor", ["--model_dir", store_uri], tmp_path / "predictor.log", http=http,
                                 grpc=grpc)
        deadline, codes = time.monotonic() + 40, []
        while time.monotonic() < deadline:  # gRPC reconnects with backoff: 503 until the channel is up again
            codes.append(_grade(transformer.url, case_b64).status_code)
            if codes[-1] != 503:
                break
            time.sleep(1)
        assert codes[-1] == 200, codes

        os.killpg(predictor.proc.pid, signal.SIGSTOP)  # alive but not answering
        try:
            slow = _grade(transformer.url, case_b64)
        finally:
            os.killpg(predictor.proc.pid, signal.SIGCONT)
        assert slow.status_code == 504, slow.text
        assert "did not answer in time" in slow.json()["error"]
        assert _grade(transformer.url, case_b64).status_code == 200
        metrics = httpx.get(f"{transformer.url}/metrics").text
        assert 'gliomagrade_errors_total{kind="unavailable",model="glioma"}' in metrics
        assert 'gliomagrade_errors_total{kind="predictor_timeout",model="glioma"} 1.0' in metrics
    finally:
        transformer.stop()
        if predictor is not None:
            predictor.stop()


def test_rest_transport_errors_map_to_503_and_504() -> None:
    """Real httpx failures: nothing listening (connect refused) and a listener that never answers."""
    port = free_port()
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.post(f"http://127.0.0.1:{port}/v2/models/m/infer", content=b"{}", timeout=2)
    mapped = _predictor_error(refused.value, f"127.0.0.1:{port}")
    assert isinstance(mapped, PredictorUnavailable) and "unreachable" in mapped.reason

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(httpx.ReadTimeout) as slow:
            httpx.post(f"http://127.0.0.1:{silent.getsockname()[1]}/v2/models/m/infer", content=b"{}", timeout=0.5)
    mapped = _predictor_error(slow.value, "silent")
    assert isinstance(mapped, PredictorTimeout) and "did not answer in time" in mapped.reason

    request = httpx.Request("POST", "http://p/v2/models/m/infer")
    for status, kind in ((503, PredictorUnavailable), (504, PredictorTimeout)):
        error = httpx.HTTPStatusError("x", request=request, response=httpx.Response(status, request=request))
        assert isinstance(_predictor_error(error, "p"), kind)
