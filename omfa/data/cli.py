"""`omfa synth`: generate the synthetic fitting-room dataset, or a contact sheet of it.

    omfa synth --out data/synth --train 12000 --val 200 --test 400 --workers 2 --seed 0
    omfa synth --out data/synth-64 --size 64x48      # smaller images (and so smaller models)
    omfa synth --sheet docs/synthetic_sheet.png --rows 6 --seed 0

Generation is resumable: rerun the same command and finished shards are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omfa.cli import parse_size
from omfa.data.generate import DEFAULT_SHARD_SIZE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omfa synth", description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="dataset folder to write (or resume)")
    target.add_argument("--sheet", type=Path, help="write a contact sheet PNG of freshly rendered samples instead")
    parser.add_argument("--train", type=int, default=12000, help="train samples (default 12000)")
    parser.add_argument("--val", type=int, default=200, help="validation samples (default 200)")
    parser.add_argument("--test", type=int, default=400, help="test samples, a multiple of 8 (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="everything derives from it (default 0)")
    parser.add_argument(
        "--partition-seed",
        type=int,
        default=None,
        help="seed of the pose presets' split (default: --seed); a fresh test set for a model "
        "trained on seed S: --seed NEW --partition-seed S --train 0 --val 0",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="samples per shard")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        metavar="HxW",
        help="image size, height x width px (default 128x96); the canvas of models trained on it",
    )
    parser.add_argument("--rows", type=int, default=6, help="contact sheet: number of samples (default 6)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"), help="contact sheet: split")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv[1:])  # argv[0] is the command name
    from omfa.data.synthetic import SynthConfig, SynthConfigError

    try:
        size = {} if args.size is None else {"size_hw": args.size}
        counts = {"train": args.train, "val": args.val, "test": args.test}
        config = SynthConfig(seed=args.seed, counts=counts, partition_seed=args.partition_seed, **size)
    except SynthConfigError as error:
        print(f"omfa synth: {error}", file=sys.stderr)
        return 2
    if args.sheet is not None:
        return _sheet(config, args.split, args.rows, args.sheet)
    from omfa.data.generate import generate

    generate(
        args.out, config, workers=args.workers, shard_size=args.shard_size, log=lambda line: print(line, flush=True)
    )
    return 0


def _sheet(config, split: str, rows: int, path: Path) -> int:
    import numpy as np
    from PIL import Image

    from omfa.data.fitting_room import FittingRoom
    from omfa.data.sheet import contact_sheet
    from omfa.data.synthetic import sample_spec, split_presets

    room = FittingRoom(size_hw=config.size_hw)
    partition = split_presets(list(room.presets), config.preset_seed)
    count = config.counts[split]
    # Spread the rows over the split so they show different garments and people.
    indices = np.linspace(0, count - 1, rows).astype(int)
    samples = [room.render(sample_spec(config, split, int(i), room.presets, partition)) for i in indices]
    room.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(samples)).save(path)
    print(f"wrote {path} ({rows} {split} samples)")
    return 0
