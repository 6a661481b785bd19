"""`glioma pipeline run --local`: optional synthetic cohort, the kfp.local run, and a printed summary."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel

from gliomagrade.pipelines.runner import LocalRun, parse_params, run_local


def prepare_cohort(args: argparse.Namespace, console: Console) -> str:
    """The raw cohort to run on: the given one, or a synthetic one written under ``args.out``."""
    if args.cohort:
        return str(args.cohort) if "://" in str(args.cohort) else str(Path(args.cohort).resolve())
    from gliomagrade.synth.cohort import write_cohort
    from gliomagrade.synth.params import SynthParams

    params = SynthParams(resolution=args.resolution, **({} if args.difficulty is None else
                                                        {"difficulty": args.difficulty}))
    out = (args.out / f"synthetic-{args.synth}-seed{args.seed}-d{params.difficulty:g}").resolve()
    if not (out / ".complete").exists():
        console.print(f"[bold]Synthesising[/] {args.synth} cases at {args.resolution} mm "
                      f"(difficulty {params.difficulty:g}) -> {out}")
        write_cohort(out, n=args.synth, seed=args.seed, layout="brats2020", workers=0, params=params)
        (out / ".complete").write_text("ok\n")
    else:
        console.print(f"Reusing the synthetic cohort in {out}")
    return str(out)


def run_and_report(args: argparse.Namespace) -> int:
    """Run the pipeline locally and print what it decided; exit 0 whether or not the gate passed."""
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    cohort = prepare_cohort(args, console)
    registry = args.registry or str((args.out / "registry").resolve())
    params = {"cohort_uri": cohort, "profile": args.profile, "registry_uri": registry, **parse_params(args.param)}
    step_log = (args.out / "pipeline-steps.log").resolve()
    console.print(f"[bold]Running the pipeline with kfp.local[/] (pipeline root {args.out / 'kfp'}; "
                  f"step output in {step_log})")
    t0 = time.perf_counter()
    try:
        run = run_local(params, args.out / "kfp", step_log=step_log)
    except RuntimeError as exc:  # kfp.local's way of saying a task failed
        lines = step_log.read_text().splitlines() if step_log.is_file() else []
        last_tb = max((i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line), default=-1)
        tail = lines[last_tb:] if last_tb >= 0 else lines[-40:]
        console.print("\n".join(tail[-60:]), markup=False, highlight=False)
        console.print(f"[red]pipeline failed:[/] {exc} (full step output: {step_log})")
        return 1
    elapsed = time.perf_counter() - t0
    print_summary(run, console, registry, elapsed)
    return 0


def print_summary(run: LocalRun, console: Console, registry: str, elapsed: float) -> None:
    """Print each step's Markdown summary and where the report, ONNX file and registry are."""
    for step, text in run.summaries().items():
        console.print(Panel(Markdown(text), title=step, expand=False))
    report = run.artifact("evaluate", "report")
    console.print(f"report:   {report / 'index.html' if report.is_dir() else report}")
    onnx = sorted(run.root.glob("export/onnx_model/**/model.onnx"))
    if onnx:
        console.print(f"onnx:     {onnx[0]}")
    console.print(f"registry: {registry}")
    verdict = "rejected by the gate" if run.release.startswith("rejected") else f"released version {run.release}"
    console.print(f"[bold]pipeline finished in {elapsed / 60:.1f} min: {verdict}[/]")
