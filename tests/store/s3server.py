"""A real S3-protocol server (moto_server) as a child process, for the store and registry tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from gliomagrade.store import RetryPolicy, S3Settings, S3Store

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)
KEY_ID, SECRET = "testing-key-id", "testing-secret"


def moto_binary() -> str:
    """moto_server next to this interpreter (the venv), else on PATH; fail in CI, skip elsewhere."""
    local = Path(sys.executable).with_name("moto_server")
    found = str(local) if local.is_file() else shutil.which("moto_server")
    if found:
        return found
    if os.environ.get("GLIOMA_REQUIRE_TOOLS") == "1":
        pytest.fail("moto_server is required in CI (pip install 'moto[server]')")
    pytest.skip("moto_server not installed (pip install 'moto[server]')")


def unused_port() -> int:
    """A free port for a server that outlives one test (the ``port`` fixture is per test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """One moto_server process on 127.0.0.1:port; ``kill``/``start`` reuse the port (state is lost)."""

    def __init__(self, port: int, log_dir: Path, env: dict[str, str] | None = None):
        self.port, self.log_dir, self.env = port, log_dir, env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> MotoServer:
        """Start the process and wait until it answers HTTP."""
        log = open(self.log_dir / f"moto-{self.port}.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([moto_binary(), "-H", "127.0.0.1", "-p", str(self.port)], stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}; see {self.log_dir}")
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto_server on port {self.port} did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the abrupt death of the S3 endpoint."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """Shut the server down (SIGKILL: moto keeps nothing worth flushing, and SIGTERM takes ~1 s)."""
        self.kill()

    def settings(self, **overrides: object) -> S3Settings:
        """Plain-HTTP settings for this server (moto accepts any key unless IAM auth is on)."""
        base = {"endpoint": self.endpoint, "secure": False, "region": "us-east-1", "access_key": KEY_ID,
                "secret_key": SECRET, "access_key_source": "AWS_ACCESS_KEY_ID"}
        return S3Settings(**{**base, **overrides})  # type: ignore[arg-type]

    def store(self, bucket: str | None = None, prefix: str = "reg", *, create: bool = True,
              retry: RetryPolicy = FAST_RETRY, **overrides: object) -> S3Store:
        """An S3Store on a fresh bucket (created unless ``create=False``)."""
        bucket = bucket or f"b-{uuid.uuid4().hex[:12]}"
        return S3Store(bucket, prefix, settings=self.settings(create_bucket=create, **overrides), retry=retry)


class TcpProxy:
    """A TCP forwarder 127.0.0.1:port -> upstream that can be cut and restored: a network outage in
    front of a server that keeps its state (which a moto restart would not)."""

    def __init__(self, port: int, upstream: int):
        self.port, self.upstream = port, upstream
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        """Listen again on the same port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            socks, self._conns = [self._listener, *self._conns], []
            self._listener = None
        for s in socks:
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
