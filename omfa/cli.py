"""The `omfa` command: one entry point, a subcommand per area.

Each area owns its own argument parsing in its own module (`omfa.pose.cli`,
`omfa.data.cli`, ...); this file only dispatches, so importing it stays cheap
and an area's heavy imports (torch, pyrender, mediapipe) load only when used.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with a `main(argv) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "tryon": ("omfa.run_cli", "put garments on a portrait"),
    "tryoff": ("omfa.run_cli", "extract the flat garment from a dressed person"),
    "transfer": ("omfa.run_cli", "take a garment from one person's photo and put it on another"),
    "multiview": ("omfa.run_cli", "show the person in other poses and views"),
    "pose": ("omfa.pose.cli", "list, render and estimate SMPL-X poses"),
    "synth": ("omfa.data.cli", "generate the synthetic fitting-room dataset"),
    "train": ("omfa.train", "train a model"),
    "eval": ("omfa.evaluate", "evaluate a model against baselines"),
    "ablate": ("omfa.ablations", "train and score the ablations at equal compute"),
    "bench": ("omfa.bench", "benchmarks (cache, reliability)"),
}


def _usage() -> str:
    lines = ["usage: omfa COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"omfa: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # run_cli serves several commands, so it is told which one was asked for.
    if COMMANDS[name][0] == "omfa.run_cli":
        return int(module.main([name, *rest]) or 0)
    return int(module.main(rest) or 0)
