"""`glioma cohort` sub-commands: synthesise a cohort, draw a montage of one."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's sub-commands to the `glioma` parser."""
    group = sub.add_parser("cohort", help="synthetic cohorts (generate, montage)")
    cmds = group.add_subparsers(dest="cohort_command", metavar="SUBCOMMAND", required=True)

    synth = cmds.add_parser("synth", help="generate a synthetic glioma cohort with ground truth")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--n", type=int, required=True, help="number of cases")
    synth.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    synth.add_argument("--layout", default="brats2020", choices=("brats2020", "brats2019", "manifest", "dicom"))
    synth.add_argument("--hgg-fraction", type=float, default=0.75, help="share of WHO IV cases (default 0.75)")
    synth.add_argument("--grade3-share", type=float, default=0.5, help="share of WHO III among LGG (default 0.5)")
    synth.add_argument("--difficulty", type=float, default=0.2,
                       help="0..1, pulls the grades' tumour distributions together (default 0.2)")
    synth.add_argument("--skull-prob", type=float, default=0.8, help="probability of keeping skull and scalp")
    synth.add_argument("--misregistration-prob", type=float, default=0.5,
                       help="probability of head motion between sequences")
    synth.add_argument("--resolution", type=float, default=1.0, help="voxel size in mm (1 = full, 2 = demo)")
    synth.add_argument("--workers", type=int, default=0, help="worker processes (0 = all CPUs)")
    synth.add_argument("--brats-like", action="store_true",
                       help="skull-stripped 240x240x155 1 mm images without pose, as BraTS ships them")
    synth.set_defaults(func=_synth)

    montage = cmds.add_parser("montage", help="PNG montage of HGG and LGG cases of a synthetic cohort")
    montage.add_argument("cohort_dir", type=Path, help="folder given to `glioma cohort synth --out`")
    montage.add_argument("--out", type=Path, required=True, help="PNG to write")
    montage.add_argument("--n-hgg", type=int, default=3)
    montage.add_argument("--n-lgg", type=int, default=3)
    montage.set_defaults(func=_montage)


def _synth(args: argparse.Namespace) -> int:
    """Run `glioma cohort synth`."""
    from gliomagrade.errors import ConfigError
    from gliomagrade.synth import SynthParams, write_cohort

    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    params = SynthParams(
        hgg_fraction=args.hgg_fraction,
        grade3_share=args.grade3_share,
        difficulty=args.difficulty,
        skull_prob=args.skull_prob,
        misregistration_prob=args.misregistration_prob,
        resolution=args.resolution,
        brats_like=args.brats_like,
    )
    root = write_cohort(args.out, args.n, seed=args.seed, layout=args.layout, workers=args.workers,
                        params=params, progress=True)
    print(root)
    return 0


def _montage(args: argparse.Namespace) -> int:
    """Run `glioma cohort montage`."""
    from gliomagrade.synth.montage import make_montage

    print(make_montage(args.cohort_dir, args.out, n_hgg=args.n_hgg, n_lgg=args.n_lgg))
    return 0
