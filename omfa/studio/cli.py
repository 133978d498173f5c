"""`omfa tryon / tryoff / transfer / multiview`: the app's runs from the command line.

    omfa tryon --portrait me.jpg --top shirt.png [--bottom jeans.png] [--pose walking | --pose portrait] --out out.png
    omfa tryoff --photo dressed.jpg --which both --out-dir garments/
    omfa transfer --portrait me.jpg --source other_person.jpg --which upper --out out.png
    omfa multiview --portrait me.jpg --poses a_pose,walking --turns 0,90 --out-dir views/

The same preparation and sampling as the app (`omfa.studio.runs`): uploads are
loaded safely, cut out and framed at the model's canvas size; a dressed person
given as a garment source is passed through try-off first. Images are written
at the model's own size (the app's page only enlarges them). The defaults are
the app's (`RunSettings`; the weights bf16 where the CPU or GPU has it natively,
`--precision`); nothing is compiled (for one run, compiling costs more than it
saves). Progress goes to stderr, one line per step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from omfa.acceleration import PRECISIONS
from omfa.diffusion import SCHEDULERS
from omfa.studio.settings import TRY_OFF_DEFAULTS, RunSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omfa", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, defaults: RunSettings = RunSettings()) -> None:
        p.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: the shipped one)")
        p.add_argument("--steps", type=int, default=defaults.steps)
        p.add_argument("--guidance", type=float, default=defaults.guidance)
        p.add_argument("--seed", type=int, default=defaults.seed)
        p.add_argument("--scheduler", default=defaults.scheduler, choices=list(SCHEDULERS))
        p.add_argument(
            "--precision", choices=PRECISIONS, default="auto", help="weights' dtype: auto is bf16 where native"
        )
        p.add_argument("--quiet", action="store_true", help="no per-step progress")

    def pose(p: argparse.ArgumentParser) -> None:
        p.add_argument("--pose", default="a_pose", help="a preset name, or 'portrait' to keep the portrait's pose")
        p.add_argument("--turn", type=float, default=0.0, help="turn the view by this many degrees")

    tryon = sub.add_parser("tryon", help="put garments on the portrait's person")
    tryon.add_argument("--portrait", required=True)
    tryon.add_argument("--top", help="a flat top, or a photo of a person wearing it")
    tryon.add_argument("--bottom", help="a flat bottom, or a photo of a person wearing it")
    tryon.add_argument("--out", type=Path, required=True)
    pose(tryon)
    common(tryon)

    tryoff = sub.add_parser("tryoff", help="the flat garments a dressed person wears")
    tryoff.add_argument("--photo", required=True)
    tryoff.add_argument("--which", choices=("upper", "lower", "both"), default="upper")
    tryoff.add_argument("--out-dir", type=Path, required=True)
    common(tryoff, TRY_OFF_DEFAULTS)

    transfer = sub.add_parser("transfer", help="another person's garment onto the portrait's person")
    transfer.add_argument("--portrait", required=True)
    transfer.add_argument("--source", required=True, help="photo of the person wearing the garment")
    transfer.add_argument("--which", choices=("upper", "lower", "both"), default="upper")
    transfer.add_argument("--out", type=Path, required=True)
    pose(transfer)
    common(transfer)

    multiview = sub.add_parser("multiview", help="the portrait's person in several poses and views")
    multiview.add_argument("--portrait", required=True)
    multiview.add_argument("--poses", default="a_pose", help="comma-separated preset names")
    multiview.add_argument("--turns", default="0", help="comma-separated view turns in degrees")
    multiview.add_argument("--out-dir", type=Path, required=True)
    common(multiview)
    return parser


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    print(path)


def _run(args: argparse.Namespace) -> int:
    from omfa.pipeline import DEFAULT_MODEL_DIR, OMFAPipeline
    from omfa.studio.card import ModelCard
    from omfa.studio.context import StudioContext
    from omfa.studio.runs import PoseChoice, stream_gallery, stream_try_off, stream_try_on

    settings = RunSettings(args.steps, args.guidance, args.seed, args.scheduler)
    model = args.model or DEFAULT_MODEL_DIR
    ctx = StudioContext(OMFAPipeline.load(model, precision=args.precision), card=ModelCard.read(model))
    try:
        if args.command in ("tryon", "transfer"):
            choice = PoseChoice(
                "portrait" if args.pose == "portrait" else "preset",
                args.pose if args.pose != "portrait" else "a_pose",
                args.turn,
            )
            if args.command == "tryon":
                sources = [(s, w) for s, w in ((args.top, "upper"), (args.bottom, "lower")) if s]
            else:
                sources = [(args.source, args.which)]
            frames = stream_try_on(ctx, args.portrait, sources, choice, settings)
        elif args.command == "tryoff":
            frames = stream_try_off(ctx, args.photo, args.which, settings)
        else:
            turns = [float(t) for t in args.turns.split(",") if t.strip()]
            frames = stream_gallery(
                ctx, args.portrait, [p.strip() for p in args.poses.split(",") if p.strip()], turns, settings
            )
        last = None
        for frame in frames:
            if not args.quiet:
                print(f"[{frame.progress:4.0%}] {frame.status}", file=sys.stderr)
            last = frame
        for note in last.notes:  # inputs outside the model's training data, invented body parts
            print(f"note: {note}", file=sys.stderr)
        if args.command in ("tryon", "transfer"):
            _save(last.images["result"], args.out)
        elif args.command == "tryoff":
            for slot in ("upper", "lower"):
                if slot in last.images and (args.which in (slot, "both")):
                    _save(last.images[slot], args.out_dir / f"{slot}.png")
        else:
            for k, (image, _caption) in enumerate(last.gallery):
                _save(image, args.out_dir / f"view_{k:02d}.png")
    finally:
        ctx.close()
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ValueError as error:  # bad inputs: one sentence, no traceback
        print(f"omfa {args.command}: {error}", file=sys.stderr)
        return 2
