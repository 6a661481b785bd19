"""Request limits of the model servers and the HTTP errors KServe has no exception for.

KServe 0.21 maps its own exceptions to 400/404/500/501/503 (``kserve.errors``); a body over the size
limit (413), an unsupported content type (415), a case preprocessing cannot handle (422), an overloaded
server (503 + Retry-After) and a predictor that does not answer in time (504) are added here:

- ``LimitsMiddleware`` (pure ASGI, added to ``kserve.model_server.app`` before the server starts) bounds
  the body size while it is being received, checks the content type, refuses empty bodies and caps the
  number of inference requests in flight (a bounded queue: the excess is refused with 503 at once
  instead of piling up in memory). It also counts every 4xx/5xx response by kind.
- ``install_exception_handlers`` maps this module's exceptions to status codes with a JSON body
  ``{"error": "..."}`` like KServe's own handlers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from gliomagrade.serving import metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MiB = 1024 * 1024
ALLOWED_CONTENT_TYPES = ("application/json", "application/octet-stream", "application/cloudevents+json")
STATUS_KIND = {400: "bad_request", 404: "not_found", 405: "bad_request", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "preprocess", 500: "internal", 501: "bad_request",
               502: "predictor_error", 503: "unavailable", 504: "predictor_timeout"}


@dataclass(frozen=True)
class ServingLimits:
    """Bounds on what one server accepts; every field has a command-line flag (``add_limit_args``)."""

    max_body_bytes: int = 256 * MiB
    """A BraTS case (4 x 240x240x155 float32 NIfTI, gzip ~ 4 x 8 MB; uncompressed 4 x 36 MB) fits easily."""
    max_in_flight: int = 8
    """Inference requests processed at once; more get 503 + Retry-After (bounded queue and memory)."""
    max_instances: int = 1
    """Cases per request: the transformer grades one case per request (a case is already ~100 MB)."""
    max_image_bytes: int = 512 * MiB
    """Decompressed size of one image (gzip bomb guard before SimpleITK reads it)."""
    grpc_max_message_bytes: int = 512 * MiB
    """gRPC send/receive limit (KServe's default 8 MiB is far below a 4 x 128^3 float32 tensor, 32 MiB)."""


def add_limit_args(parser: argparse.ArgumentParser) -> None:
    """Flags for ``ServingLimits`` (defaults from the dataclass)."""
    d = ServingLimits()
    parser.add_argument("--max_body_mb", type=float, default=d.max_body_bytes / MiB,
                        help="largest request body in MiB (413 above)")
    parser.add_argument("--max_in_flight", type=int, default=d.max_in_flight,
                        help="inference requests processed at once (503 + Retry-After above)")
    parser.add_argument("--max_instances", type=int, default=d.max_instances, help="cases per request")
    parser.add_argument("--max_image_mb", type=float, default=d.max_image_bytes / MiB,
                        help="largest decompressed image in MiB")


def limits_from_args(args: argparse.Namespace) -> ServingLimits:
    """Build ``ServingLimits`` from parsed flags, validating them."""
    limits = ServingLimits(
        max_body_bytes=int(args.max_body_mb * MiB), max_in_flight=int(args.max_in_flight),
        max_instances=int(args.max_instances), max_image_bytes=int(args.max_image_mb * MiB),
        grpc_max_message_bytes=max(int(args.max_body_mb * MiB) + MiB, ServingLimits().grpc_max_message_bytes),
    )
    if limits.max_body_bytes <= 0 or limits.max_in_flight < 1 or limits.max_instances < 1:
        raise SystemExit(f"invalid limits: {limits}")
    return limits


class ServingHTTPError(Exception):
    """Base of the errors this module maps to an HTTP status."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PayloadTooLarge(ServingHTTPError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(ServingHTTPError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class UnprocessableCase(ServingHTTPError):
    """The request is well formed but the case cannot be preprocessed (registration failed, empty brain)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class PredictorUnavailable(ServingHTTPError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


class PredictorTimeout(ServingHTTPError):
    status = HTTPStatus.GATEWAY_TIMEOUT


class PredictorFailed(ServingHTTPError):
    """The predictor answered with an error the client cannot fix (bad gateway)."""

    status = HTTPStatus.BAD_GATEWAY


async def _serving_error_handler(_request: Any, exc: Exception) -> Any:
    from fastapi.responses import JSONResponse

    assert isinstance(exc, ServingHTTPError)
    return JSONResponse(status_code=int(exc.status), content={"error": exc.reason})


async def _validation_error_handler(_request: Any, exc: Exception) -> Any:
    """FastAPI's body validation (malformed JSON, V2 fields missing) as 400 ``{"error": ...}`` like KServe's."""
    from fastapi.responses import JSONResponse

    errors = getattr(exc, "errors", lambda: [])()
    parts = [f"{'.'.join(str(x) for x in e.get('loc', ()) if x != 'body')}: {e.get('msg')}" for e in errors[:5]]
    return JSONResponse(status_code=400, content={"error": "invalid request body: " + "; ".join(parts)})


def install_exception_handlers(app: Any) -> None:
    """Map ``ServingHTTPError`` subclasses to their status and body validation errors to 400, as JSON."""
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(ServingHTTPError, _serving_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)


def _is_inference_path(path: str) -> bool:
    return path.startswith(("/v1/models/", "/v2/models/")) and path.endswith((":predict", "/infer", ":explain"))


async def _send_json(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class LimitsMiddleware:
    """Body size, content type, empty body and in-flight limits for the inference routes; error counting."""

    def __init__(self, app: ASGIApp, limits: ServingLimits, server: str, model: str):
        self.app, self.limits, self.server, self.model = app, limits, server, model
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not _is_inference_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        send = self._counting(send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype not in ALLOWED_CONTENT_TYPES:
            await _send_json(send, 415, f"unsupported content type {ctype!r}; expected one of "
                                        f"{', '.join(ALLOWED_CONTENT_TYPES)}")
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            await _send_json(send, 413, f"request body of {int(declared)} bytes exceeds the limit of "
                                        f"{self.limits.max_body_bytes} bytes")
            return
        if self.in_flight >= self.limits.max_in_flight:
            await _send_json(send, 503, f"server busy: {self.in_flight} requests in flight (limit "
                                        f"{self.limits.max_in_flight}); retry later", [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        metrics.IN_FLIGHT.labels(self.server).set(self.in_flight)
        try:
            body = await self._read_body(receive, send)
            if body is not None:
                await self.app(scope, _replay(body), send)
        finally:
            self.in_flight -= 1
            metrics.IN_FLIGHT.labels(self.server).set(self.in_flight)

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 413 (too large) / 400 (empty)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                await _send_json(send, 413, f"request body exceeds the limit of {self.limits.max_body_bytes} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size == 0:
            await _send_json(send, 400, "empty request body")
            return None
        return b"".join(chunks)

    def _counting(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                kind = STATUS_KIND.get(int(message["status"]), f"http_{message['status']}")
                metrics.ERRORS.labels(self.model, kind).inc()
            await send(message)

        return wrapped


def _replay(body: bytes) -> Receive:
    """A ``receive`` that yields the buffered body once, then waits like a live connection."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
