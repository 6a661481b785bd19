"""Compile the pipeline, run it locally with ``kfp.local``, or submit it to a Kubeflow Pipelines host."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler, local

from gliomagrade.components import DEFAULT_IMAGE
from gliomagrade.pipelines.glioma_pipeline import PIPELINE_NAME, build_pipeline

log = logging.getLogger(__name__)

COMPILED = Path(__file__).with_name("glioma_pipeline.yaml")
"""The committed IR YAML (a test fails when it is stale)."""

SUMMARY_FILES = ("evaluate/summary", "gate/summary", "register/summary", "rejected/summary")


def compile_pipeline(out: Path = COMPILED, *, image: str = DEFAULT_IMAGE, gpu: bool = True) -> Path:
    """Write the pipeline's IR YAML."""
    compiler.Compiler().compile(build_pipeline(image=image, gpu=gpu), str(out))
    return out


@dataclass(frozen=True)
class LocalRun:
    """Where a local run left its outputs, and what it released."""

    root: Path
    release: str

    def summaries(self) -> dict[str, str]:
        """The Markdown summaries the run's steps wrote, by step name."""
        found = {}
        for rel in SUMMARY_FILES:
            path = self.root / rel
            if path.is_file():
                found[rel.split("/")[0]] = path.read_text()
        return found

    def artifact(self, step: str, name: str) -> Path:
        return self.root / step / name


def run_local(arguments: dict[str, Any], pipeline_root: Path, *, step_log: Path | None = None) -> LocalRun:
    """Run the whole pipeline in this environment with ``kfp.local.SubprocessRunner``.

    ``step_log`` receives what the steps print (KFP's executor dumps its full input and output per step);
    the orchestrator's one-line progress stays on the console.
    """
    pipeline_root = pipeline_root.resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    with contextlib.ExitStack() as stack:
        # Expected on the embedded default: our image is the current environment, and cluster-only
        # settings (GPU, CPU/memory requests) are ignored locally by design.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="Task .* have no effect in the current local runner")
        if step_log is not None:
            sink = _ProgressTee(stack.enter_context(step_log.open("a")), sys.stdout)
            stack.enter_context(contextlib.redirect_stdout(sink))
        task = build_pipeline()(**arguments)
    new = sorted(set(pipeline_root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise RuntimeError(f"kfp.local wrote no run folder under {pipeline_root}")
    root = new[-1]
    return LocalRun(root=root, release=str(task.output))


class _ProgressTee(io.TextIOBase):
    """Everything to the step log; only the orchestrator's task start/finish lines to the console."""

    PROGRESS = re.compile(r"Executing task|finished with status|Pipeline .* finished")

    def __init__(self, log: io.TextIOBase, console: Any):
        self.log, self.console, self._line = log, console, ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            if self.PROGRESS.search(line):
                self.console.write(line + "\n")
                self.console.flush()
        return len(text)

    def flush(self) -> None:
        self.log.flush()


def submit(host: str, arguments: dict[str, Any], *, experiment: str = "gliomagrade", run_name: str | None = None,
           package: Path = COMPILED, namespace: str | None = None) -> str:
    """Upload-and-run the compiled pipeline on a KFP cluster; returns the run id."""
    import kfp

    client = kfp.Client(host=host, namespace=namespace)
    result = client.create_run_from_pipeline_package(
        str(package), arguments=arguments, experiment_name=experiment, run_name=run_name or PIPELINE_NAME,
    )
    log.info("submitted run %s to %s", result.run_id, host)
    return str(result.run_id)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` pipeline arguments; values are JSON when they parse as JSON, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"pipeline argument must be key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
