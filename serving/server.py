"""Start a ``kserve.ModelServer`` with gliomagrade's request limits, binary V2 decoding and error mapping.

Shared by the predictor and the transformer entry points. KServe 0.21 specifics handled here:

- ``kserve.model_server`` parses ``sys.argv`` at import time into a module-level ``args`` that the gRPC
  server reads its message-size options from; the defaults (8 MiB) are raised to ``ServingLimits``'s.
- the FastAPI ``app`` is module level: our middleware and exception handlers are added before
  ``ModelServer.start`` builds its routes.
- the DataPlane's binary V2 decoding is replaced by ``codec.parse_v2_binary`` (raw bytes kept).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from kserve import Model, ModelServer
from kserve import model_server as kms
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest

from gliomagrade import __version__
from gliomagrade.serving import metrics
from gliomagrade.serving.codec import parse_v2_binary
from gliomagrade.serving.limits import LimitsMiddleware, ServingLimits, install_exception_handlers

log = logging.getLogger(__name__)


class GliomaDataPlane(DataPlane):
    """KServe's DataPlane with a binary V2 decoder that keeps raw tensor bytes and validates bounds."""

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        if isinstance(body, bytes):  # no JSON content type: binary extension, or a JSON-only body without header
            return parse_v2_binary(body, headers.get(INFERENCE_CONTENT_LENGTH_HEADER, len(body)), model_name)
        return super().decode_inference_request(body, headers, model_name)


def kserve_args(args: argparse.Namespace, limits: ServingLimits) -> None:
    """Copy our parsed flags into KServe's module-level args (read by its gRPC server)."""
    default = kms.MAX_GRPC_MESSAGE_LENGTH
    for key in ("grpc_max_send_message_length", "grpc_max_receive_message_length"):
        value = getattr(args, key, default)
        setattr(kms.args, key, limits.grpc_max_message_bytes if value == default else value)


def serve(model: Model, args: argparse.Namespace, limits: ServingLimits, server: str) -> None:
    """Load-checked ``model`` served over REST + gRPC until SIGINT/SIGTERM."""
    kserve_args(args, limits)
    metrics.BUILD.info({"version": __version__})
    ms = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1,
                     enable_grpc=args.enable_grpc)
    ms.dataplane = GliomaDataPlane(model_registry=ms.registered_models)
    kms.app.add_middleware(LimitsMiddleware, limits=limits, server=server, model=model.name)
    install_exception_handlers(kms.app)
    log.info("%s %s: REST :%d, gRPC :%d (max message %d bytes)", server, model.name, args.http_port,
             args.grpc_port, kms.args.grpc_max_receive_message_length)
    ms.start([model])
