"""Run the predictor and the transformer as two local processes (the two containers of the InferenceService).

``Stack.start`` launches both with ``python -m gliomagrade.serving.<role>`` in their own process groups,
waits until each answers ``/v2/models/<name>/ready``, and ``Stack.stop`` ends both (SIGTERM, then SIGKILL
after a grace period). ``run_stack`` is the blocking loop of ``glioma serve``: it returns when SIGINT /
SIGTERM arrives or when one process dies (then the other is stopped as well, like a failing pod).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gliomagrade.errors import GliomaError

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness polling would log every request


@dataclass(frozen=True)
class StackConfig:
    """Everything ``glioma serve`` needs to start both servers."""

    store: str
    model: str
    version: str = "promoted"
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    predictor_http_port: int = 8082
    predictor_grpc_port: int = 8083
    predictor_protocol: str = "v2"
    timeout_s: int = 60
    retries: int = 0
    max_in_flight: int = 8
    max_body_mb: float = 256.0
    device: str = "auto"
    extra_transformer_args: tuple[str, ...] = ()


@dataclass
class Stack:
    """Two running server processes."""

    config: StackConfig
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def _command(self, role: str) -> list[str]:
        c = self.config
        if role == "predictor":
            args = ["--http_port", str(c.predictor_http_port), "--grpc_port", str(c.predictor_grpc_port),
                    "--device", c.device]
        else:
            target = c.predictor_grpc_port if c.predictor_protocol == "grpc-v2" else c.predictor_http_port
            args = ["--http_port", str(c.http_port), "--grpc_port", str(c.grpc_port),
                    "--predictor_host", f"{c.host}:{target}", "--predictor_protocol", c.predictor_protocol,
                    "--predictor_request_timeout_seconds", str(c.timeout_s),
                    "--predictor_request_retries", str(c.retries), *c.extra_transformer_args]
        return [sys.executable, "-m", f"gliomagrade.serving.{role}", "--model_name", c.model, "--model_dir", c.store,
                "--model_version", c.version, "--max_in_flight", str(c.max_in_flight),
                "--max_body_mb", str(c.max_body_mb), *args]

    def url(self, role: str) -> str:
        port = self.config.http_port if role == "transformer" else self.config.predictor_http_port
        return f"http://{self.config.host}:{port}"

    def start(self, ready_timeout_s: float = 180.0) -> None:
        """Start the predictor, then the transformer; wait until both are ready or raise (both stopped)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for role in ("predictor", "transformer"):
                out = (self.log_dir / f"{role}.log").open("ab")
                self.procs[role] = subprocess.Popen(self._command(role), stdout=out, stderr=subprocess.STDOUT,
                                                    start_new_session=True)
                log.info("started %s (pid %d), log %s", role, self.procs[role].pid, self.log_dir / f"{role}.log")
            for role in ("predictor", "transformer"):
                self._wait_ready(role, ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, role: str, timeout_s: float) -> None:
        url = f"{self.url(role)}/v2/models/{self.config.model}/ready"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.procs[role]
            if proc.poll() is not None:
                tail = (self.log_dir / f"{role}.log").read_text(errors="replace")[-2000:]
                raise GliomaError(f"{role} exited with code {proc.returncode} before it was ready:\n{tail}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise GliomaError(f"{role} not ready at {url} after {timeout_s:.0f} s (see {self.log_dir / role}.log)")

    def dead(self) -> str | None:
        """The role of a process that exited, if any."""
        return next((role for role, p in self.procs.items() if p.poll() is not None), None)

    def stop(self, grace_s: float = 15.0) -> dict[str, int | None]:
        """SIGTERM both process groups, SIGKILL what is left after ``grace_s``; return exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for role, proc in self.procs.items():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", role, grace_s)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return {role: p.returncode for role, p in self.procs.items()}


def run_stack(config: StackConfig, log_dir: Path) -> int:
    """Start both servers, print their URLs, block until a signal or a crash, stop both; exit code."""
    stack = Stack(config, log_dir)
    stopping = {"signal": None}

    def _handler(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.start()
        name = config.model
        print(f"predictor   {stack.url('predictor')}/v2/models/{name}  (gRPC {config.host}:{config.predictor_grpc_port})")
        print(f"transformer {stack.url('transformer')}/v2/models/{name}/infer  "
              f"{stack.url('transformer')}/v1/models/{name}:predict  (gRPC {config.host}:{config.grpc_port})")
        print(f"metrics     {stack.url('transformer')}/metrics  {stack.url('predictor')}/metrics")
        print("pids        " + ", ".join(f"{role} {p.pid}" for role, p in stack.procs.items()))
        print("ready; Ctrl-C to stop", flush=True)
        while stopping["signal"] is None and (dead := stack.dead()) is None:
            time.sleep(0.3)
        if stopping["signal"] is None:
            print(f"{dead} exited unexpectedly (see {log_dir / dead}.log); stopping", file=sys.stderr, flush=True)
            stack.stop()
            return 1
        codes = stack.stop()
        print(f"stopped: {codes}", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if any(p.poll() is None for p in stack.procs.values()):
            stack.stop()
