"""`glioma pipeline compile|run|submit`: the Kubeflow pipeline, locally or on a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the pipeline commands to the `glioma` parser."""
    grp = sub.add_parser("pipeline", help="compile, run locally (kfp.local) or submit the KFP pipeline")
    cmds = grp.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)

    c = cmds.add_parser("compile", help="write the pipeline's IR YAML")
    c.add_argument("--out", type=Path, default=None, help="output YAML (default: the committed pipelines/glioma_pipeline.yaml)")
    c.add_argument("--image", default=None, help="components image (default: the project's release image)")
    c.add_argument("--no-gpu", action="store_true", help="do not request a GPU for the training step")
    c.set_defaults(func=_compile)

    r = cmds.add_parser("run", help="run the whole pipeline on this machine with kfp.local")
    r.add_argument("--local", action="store_true", required=True, help="run with kfp.local (the embedded default)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--cohort", help="raw cohort: a folder (BraTS 2019/2020, manifest, DICOM) or s3://bucket/prefix")
    src.add_argument("--synth", type=int, metavar="N", help="generate a synthetic cohort of N cases first")
    r.add_argument("--seed", type=int, default=0, help="seed of the synthetic cohort")
    r.add_argument("--resolution", type=float, default=2.0, help="voxel size (mm) of the synthetic cohort")
    r.add_argument("--difficulty", type=float, default=None,
                   help="overlap of the grades in the synthetic cohort, 0..1 (default: the generator's)")
    r.add_argument("--out", type=Path, default=Path("runs/pipeline"), help="working folder (pipeline root, cohort)")
    r.add_argument("--profile", default="quick", help="quick | full | path to a profile YAML")
    r.add_argument("--registry", default=None, help="registry URI (default: OUT/registry)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other pipeline parameter (repeatable), e.g. -p folds=3 -p task=who")
    r.set_defaults(func=_run)

    s = cmds.add_parser("submit", help="upload and start the pipeline on a Kubeflow Pipelines cluster")
    s.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    s.add_argument("--cohort-uri", required=True, help="s3://bucket/prefix of the raw cohort in MinIO")
    s.add_argument("--registry", default="s3://gliomagrade/registry", help="registry URI on MinIO")
    s.add_argument("--profile", default="full")
    s.add_argument("--experiment", default="gliomagrade")
    s.add_argument("--namespace", default=None, help="KFP namespace (multi-user installs)")
    s.add_argument("--package", type=Path, default=None, help="compiled YAML (default: the committed one)")
    s.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(func=_submit)


def _compile(args: argparse.Namespace) -> int:
    from gliomagrade.components import DEFAULT_IMAGE
    from gliomagrade.pipelines.runner import COMPILED, compile_pipeline

    out = compile_pipeline(args.out or COMPILED, image=args.image or DEFAULT_IMAGE, gpu=not args.no_gpu)
    print(f"wrote {out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from gliomagrade.pipelines.local import run_and_report

    return run_and_report(args)


def _submit(args: argparse.Namespace) -> int:
    from gliomagrade.pipelines.runner import COMPILED, parse_params, submit

    params = {"cohort_uri": args.cohort_uri, "registry_uri": args.registry, "profile": args.profile,
              **parse_params(args.param)}
    run_id = submit(args.host, params, experiment=args.experiment, package=args.package or COMPILED,
                    namespace=args.namespace)
    print(f"submitted run {run_id}")
    return 0
