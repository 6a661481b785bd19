"""apply_inference_service against a small real HTTP server speaking the custom-objects API: create, then patch."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gliomagrade.deploy import apply_inference_service, deploy_version, inference_service

PATH = "/apis/serving.kserve.io/v1beta1/namespaces/gliomagrade/inferenceservices"


class _ApiServer(BaseHTTPRequestHandler):
    """Stores InferenceServices in memory: GET 404/200, POST 201 (409 if present), merge PATCH 200."""

    objects: dict[str, dict] = {}
    calls: list[tuple[str, str, str]] = []

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.calls.append(("GET", self.path, ""))
        name = self.path.rsplit("/", 1)[-1]
        if name in self.objects:
            self._reply(200, self.objects[name])
        else:
            self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        self.calls.append(("POST", self.path, self.headers["Content-Type"]))
        self.objects[body["metadata"]["name"]] = body
        self._reply(201, body)

    def do_PATCH(self) -> None:  # noqa: N802
        patch = self._body()
        self.calls.append(("PATCH", self.path, self.headers["Content-Type"]))
        name = self.path.rsplit("/", 1)[-1]
        self.objects[name] = _merge(self.objects[name], patch)
        self._reply(200, self.objects[name])

    def log_message(self, *args: object) -> None:
        pass


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch (what the API server applies for application/merge-patch+json)."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def api() -> Iterator[object]:
    from kubernetes import client

    _ApiServer.objects, _ApiServer.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield client.CustomObjectsApi(client.ApiClient(configuration))
    server.shutdown()
    server.server_close()


def _isvc(version: str, **kw: object) -> dict:
    return inference_service(name="glioma-grade", namespace="gliomagrade", model_name="glioma-grade", version=version,
                             registry_uri="s3://gliomagrade/registry",
                             storage_uri=f"s3://gliomagrade/registry/glioma-grade/versions/{version}", **kw)


def test_first_deploy_creates_and_a_rerun_patches(api: object) -> None:
    assert apply_inference_service(_isvc("1"), api) == "created"
    assert apply_inference_service(_isvc("1"), api) == "patched"  # a pipeline rerun does not fail
    assert apply_inference_service(_isvc("2"), api) == "patched"
    stored = _ApiServer.objects["glioma-grade"]
    assert stored["spec"]["predictor"]["model"]["storageUri"].endswith("/versions/2")
    assert "--model_version" in (args := stored["spec"]["transformer"]["containers"][0]["args"])
    assert args[args.index("--model_version") + 1] == "2"
    methods = [(m, ct) for m, _, ct in _ApiServer.calls]
    assert methods == [("GET", ""), ("POST", "application/json"), ("GET", ""),
                       ("PATCH", "application/merge-patch+json"), ("GET", ""), ("PATCH", "application/merge-patch+json")]
    assert all(path.startswith(PATH) for _, path, _ in _ApiServer.calls)


def test_a_later_deploy_without_canary_removes_the_old_canary(api: object) -> None:
    apply_inference_service(_isvc("1", canary_percent=10, deployment_mode="Serverless"), api)
    assert _ApiServer.objects["glioma-grade"]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    apply_inference_service(_isvc("2", deployment_mode="Serverless"), api)
    assert "canaryTrafficPercent" not in _ApiServer.objects["glioma-grade"]["spec"]["predictor"]


def test_deploy_version_pins_the_promoted_version_number(api: object, registry_store: str) -> None:
    """'promoted' is resolved in the registry; both containers get the number, the predictor its folder."""
    assert deploy_version(registry_store, "glioma", "promoted", namespace="gliomagrade", service_name="glioma-grade",
                          api=api) == "created"
    stored = _ApiServer.objects["glioma-grade"]
    assert stored["spec"]["predictor"]["model"]["storageUri"].endswith("/glioma/versions/1")
    args = stored["spec"]["transformer"]["containers"][0]["args"]
    assert args[args.index("--model_version") + 1] == "1" and args[args.index("--model_dir") + 1] == registry_store
    assert stored["metadata"]["labels"]["gliomagrade/model-version"] == "1"
