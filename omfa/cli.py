"""The `omfa` command: one entry point, a subcommand per area.

Each area owns its argument parsing in its own `cli.py` (`omfa.pose.cli`,
`omfa.data.cli`, ...), whose `main(argv)` takes the command name first
(`["tryon", "--portrait", ...]`), so an area may serve several commands; this
file only dispatches, so importing it stays cheap and an area's heavy imports
(torch, pyrender, mediapipe) load only when used.

`omfa bench` runs the benchmarks of a source checkout (`benchmarks/` beside
`omfa/`): they serve `app.py` from the checkout, so they are not installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# The checkout this package was imported from, if it is one (benchmarks/ lives there).
CHECKOUT = Path(__file__).resolve().parent.parent

# subcommand -> (module with a `main(argv) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "tryon": ("omfa.studio.cli", "put garments on a portrait"),
    "tryoff": ("omfa.studio.cli", "extract the flat garment from a dressed person"),
    "transfer": ("omfa.studio.cli", "take a garment from one person's photo and put it on another"),
    "multiview": ("omfa.studio.cli", "show the person in other poses and views"),
    "pose": ("omfa.pose.cli", "list, render and estimate SMPL-X poses"),
    "synth": ("omfa.data.cli", "generate the synthetic fitting-room dataset"),
    "train": ("omfa.training.cli", "train a model"),
    "eval": ("omfa.training.cli", "evaluate a model against baselines"),
    "ablate": ("omfa.training.cli", "train and score the ablations at equal compute"),
    "score": ("omfa.training.cli", "SSIM, LPIPS, FID and KID of results against real test images"),
    "bench": ("benchmarks.cli", "benchmarks and the reliability harness (from a source checkout)"),
}


def parse_size(text: str) -> tuple[int, int]:
    """An argparse type for image sizes: "HEIGHTxWIDTH" in pixels, "128x96" -> (128, 96)."""
    height, sep, width = text.lower().partition("x")
    if not sep or not height.strip().isdigit() or not width.strip().isdigit():
        raise argparse.ArgumentTypeError(f"size {text!r} is not HEIGHTxWIDTH in pixels; write it like 128x96")
    return int(height), int(width)


def _usage() -> str:
    lines = ["usage: omfa COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _import_area(module: str):
    """The area's cli module; benchmarks come from the checkout, with a clear message when there is none."""
    if module.startswith("benchmarks."):
        if not (CHECKOUT / "benchmarks" / "cli.py").is_file():
            raise SystemExit(
                f"omfa bench: no benchmarks/ folder next to {CHECKOUT / 'omfa'}; the benchmarks serve app.py "
                "from a source checkout: clone the repository and run `omfa bench` from an editable install"
            )
        if str(CHECKOUT) not in sys.path:
            sys.path.insert(0, str(CHECKOUT))
    return importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"omfa: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return int(_import_area(COMMANDS[name][0]).main(argv) or 0)
