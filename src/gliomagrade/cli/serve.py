"""`glioma serve` (predictor + transformer as local processes) and `glioma predict` (send one case)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``serve`` and ``predict`` to the `glioma` parser."""
    model_default = os.environ.get("GLIOMA_MODEL_NAME", "glioma-grade")
    p = sub.add_parser("serve", help="run the ONNX predictor and the transformer locally (KServe model servers)")
    p.add_argument("--store", default=os.environ.get("GLIOMA_STORE", "registry"),
                   help="registry URI (path, s3://...) or a bundle directory (default: $GLIOMA_STORE or ./registry)")
    p.add_argument("--model", default=model_default, help=f"model name (default: {model_default})")
    p.add_argument("--version", default="promoted", help="'promoted', 'latest' or a version number")
    p.add_argument("--host", default="127.0.0.1", help="address the URLs are printed for")
    p.add_argument("--http-port", type=int, default=8080, help="transformer REST port (the public endpoint)")
    p.add_argument("--grpc-port", type=int, default=8081, help="transformer gRPC port")
    p.add_argument("--predictor-http-port", type=int, default=8082)
    p.add_argument("--predictor-grpc-port", type=int, default=8083)
    p.add_argument("--predictor-protocol", choices=("v2", "grpc-v2"), default="v2",
                   help="how the transformer calls the predictor (REST binary tensors or gRPC)")
    p.add_argument("--timeout", type=int, default=60, help="predictor call timeout in seconds (504 after)")
    p.add_argument("--retries", type=int, default=0, help="predictor call retries on connection errors")
    p.add_argument("--max-in-flight", type=int, default=8, help="concurrent requests per server (503 above)")
    p.add_argument("--max-body-mb", type=float, default=256.0, help="largest request body (413 above)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="onnxruntime device")
    p.add_argument("--log-dir", type=Path, default=None, help="server logs (default: a temporary folder)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("predict", help="grade one case with a running transformer; write the CAM next to it")
    p.add_argument("inputs", nargs="+", type=Path, help="a case folder, the 4 sequence files, or a DICOM zip")
    p.add_argument("--url", required=True, help="transformer base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--model", default=model_default, help=f"model name (default: {model_default})")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: next to the input)")
    p.add_argument("--cam", choices=("nifti", "png", "both", "none"), default="both")
    p.add_argument("--protocol", choices=("v2", "v1"), default="v2", help="V2 binary (default) or V1 JSON/base64")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the answer")
    p.set_defaults(func=cmd_predict)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start both servers, print URLs, stop both on Ctrl-C / SIGTERM."""
    from gliomagrade.serving.bundle import resolve_version
    from gliomagrade.serving.launcher import StackConfig, run_stack

    version = resolve_version(args.store, args.model, args.version)
    if version != args.version:
        print(f"serving {args.model} version {version} ({args.version})")
    config = StackConfig(
        store=args.store, model=args.model, version=version, host=args.host, http_port=args.http_port,
        grpc_port=args.grpc_port, predictor_http_port=args.predictor_http_port,
        predictor_grpc_port=args.predictor_grpc_port, predictor_protocol=args.predictor_protocol,
        timeout_s=args.timeout, retries=args.retries, max_in_flight=args.max_in_flight,
        max_body_mb=args.max_body_mb, device=args.device,
    )
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="glioma-serve-"))
    return run_stack(config, log_dir)


def cmd_predict(args: argparse.Namespace) -> int:
    """Send the case, print the report, write the CAM (NIfTI + PNG) and the result JSON."""
    from gliomagrade.serving.client import find_case_files, format_report, predict_case, write_outputs

    files = find_case_files(args.inputs)
    first = args.inputs[0]
    out_dir = args.out or (first if first.is_dir() else first.parent)
    stem = first.name if first.is_dir() else (first.stem if len(args.inputs) == 1 else "case")
    result = predict_case(args.url, args.model, files, cam=args.cam, protocol=args.protocol, timeout=args.timeout)
    print(format_report(result))
    for path in write_outputs(result, out_dir, stem.removesuffix(".nii")):
        print(f"wrote      {path}")
    return 0
