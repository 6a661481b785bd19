"""A real Prometheus (Debian package) scraping the real transformer + predictor, with the project's rules.

The servers are the serving package's own processes (``tests/serving/serving_fixtures.py``: a tiny ONNX model
published in a local registry, ``python -m gliomagrade.serving.{predictor,transformer}``). Every request
sends the same phantom case, so the served high-grade probabilities collapse onto one value while the
version's reference is spread over [0, 1]: the PSI gauge must rise above the alert threshold, the project's
drift alert (``for: 30m``) must go pending, and the same rule with ``for: 1s`` must fire.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "serving"))
import serving_fixtures as sf  # noqa: E402 - the serving tests' helpers

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REQUESTS = 3
JOB = "gliomagrade-transformer"


@pytest.fixture(scope="module")
def transformer(registry_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sf.Server]:
    """Predictor and transformer processes on free loopback ports (started together, stopped after)."""
    work = tmp_path_factory.mktemp("prom-serving")
    store = registry_store
    predictor = sf.start_server("predictor", ["--model_dir", store, "--device", "cpu"], work / "predictor.log",
                                wait=False)
    transformer = sf.start_server("transformer", ["--model_dir", store, "--predictor_host",
                                                  f"127.0.0.1:{predictor.http}", "--predictor_protocol", "v2",
                                                  "--drift_min_count", "3", "--drift_window", "20"],
                                  work / "transformer.log", wait=False)
    try:
        sf.wait_ready(predictor, "predictor")
        sf.wait_ready(transformer, "transformer")
        yield transformer
    finally:
        transformer.stop()
        predictor.stop()


def _fast_copy(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same rules with ``for: 1s`` and group names suffixed (to see them fire within the test)."""
    fast = yaml.safe_load(yaml.safe_dump(groups))
    for group in fast:
        group["name"] += ".fast"
        for rule in group["rules"]:
            rule["for"] = "1s"
            rule["labels"]["copy"] = "fast"
    return fast


@pytest.fixture(scope="module")
def prometheus(transformer: sf.Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``prometheus`` on a free port: 1 s scrapes of the transformer, the project's rule file, 1 s evaluation."""
    require_tool("prometheus", "the monitoring integration test (Debian package prometheus)")
    work = tmp_path_factory.mktemp("prometheus")
    groups = yaml.safe_load((ROOT / "manifests" / "prometheus-rules.yaml").read_text())["spec"]["groups"]
    (work / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (work / "rules-fast.yaml").write_text(yaml.safe_dump({"groups": _fast_copy(groups)}))
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
              "rule_files": [str(work / "rules.yaml"), str(work / "rules-fast.yaml")],
              "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{transformer.http}"]}]}]}
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = sf.free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _get(url, "/-/ready", raw=True) == 200, 30, "prometheus ready", work / "prometheus.log")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _get(url: str, path: str, raw: bool = False, **params: str) -> Any:
    try:
        response = httpx.get(url + path, params=params, timeout=5)
    except httpx.HTTPError:
        return None
    return response.status_code if raw else response.json()


def _wait(check: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    body = _get(url, "/api/v1/query", query=expr)
    assert body and body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def _alerts(url: str) -> dict[tuple[str, str, str], str]:
    """(alert name, feature, copy) -> state, for the alerts Prometheus holds now (copy "fast": the 1 s rules)."""
    body = _get(url, "/api/v1/alerts") or {"data": {"alerts": []}}
    return {(a["labels"]["alertname"], a["labels"].get("feature", ""), a["labels"].get("copy", "")): a["state"]
            for a in body["data"]["alerts"]}


def _send_case(server: sf.Server, instance: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/models/{sf.MODEL}:predict",
                          json={"instances": [instance], "parameters": {"cam": "none"}}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def test_drift_gauge_rises_and_the_drift_alert_goes_pending_then_fires(
        prometheus: str, transformer: sf.Server, tmp_path: Path) -> None:
    _wait(lambda: _query(prometheus, f'up{{job="{JOB}"}}') and
          _query(prometheus, f'up{{job="{JOB}"}}')[0]["value"][1] == "1", 20, "the transformer scraped")
    assert _query(prometheus, 'gliomagrade_model_info{server="transformer"}')  # the version is visible
    assert not _query(prometheus, 'gliomagrade_drift_psi{feature="prob_HGG"}')  # no drift gauge before traffic

    sf.write_case(sf.phantom_images(), tmp_path / "case")
    instance = {p.name.split(".")[0]: base64.b64encode(p.read_bytes()).decode() for p in (tmp_path / "case").iterdir()}
    probabilities = {round(_send_case(transformer, instance)["prob_high"], 6) for _ in range(REQUESTS)}
    assert len(probabilities) == 1  # the same case every time: the served distribution collapses

    threshold = 0.25
    _wait(lambda: any(float(s["value"][1]) > threshold
                      for s in _query(prometheus, 'gliomagrade_drift_psi{feature="prob_HGG"}')), 20, "PSI above 0.25")
    (window,) = _query(prometheus, 'gliomagrade_drift_window_count{feature="prob_HGG"}')
    assert float(window["value"][1]) == REQUESTS
    assert _query(prometheus, f'sum(gliomagrade_predictions_total{{model="{sf.MODEL}"}})')[0]["value"][1] == str(REQUESTS)

    project, fast = ("GliomagradePredictionDrift", "prob_HGG", ""), ("GliomagradePredictionDrift", "prob_HGG", "fast")
    _wait(lambda: _alerts(prometheus).get(project) == "pending", 20, "the project's drift alert (for: 30m) pending")
    _wait(lambda: _alerts(prometheus).get(fast) == "firing", 20, "the 1 s copy of the rule firing")
    assert _alerts(prometheus).get(project) == "pending"  # its 30m have not elapsed


def test_every_dashboard_query_runs_on_the_live_server(prometheus: str, transformer: sf.Server) -> None:
    """Grafana's variables replaced as Grafana would; Prometheus must accept every query."""
    import json

    dashboard = json.loads((ROOT / "manifests" / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", "1m").replace("$namespace", ".*")
                    .replace("$model", ".*"))
            _query(prometheus, expr)  # asserts status success
