"""Regenerate the app's example images in assets/examples/.

    .venv/bin/python scripts/make_examples.py [--out assets/examples] [--seed 0]

Everything is the project's own or public domain:
- portrait.png, portrait_2.png: synthetic people (test split of the
  fitting room, so the shipped model never saw them), rendered at the
  canvas size and enlarged 3x like an upload;
- dressed.png: a third synthetic person, whose top the try-on examples
  transfer;
- top.png, bottom.png: shop images of test-split garments, each from a
  sample whose portrait does not wear it;
- astronaut.png: scikit-image's astronaut photograph (NASA, public domain),
  a real photo for the portrait path.
Each image is checked with the app's own preprocessing (a person is found
in the portraits and the dressed person, the garments are taken as flat);
candidates that fail are skipped. The choice is a pure function of the seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from omfa.data.fitting_room import FittingRoom  # noqa: E402
from omfa.data.synthetic import GROUP_SIZE, SynthConfig, sample_spec, split_presets  # noqa: E402
from omfa.imaging import ImageInputError, prepare_garment, prepare_portrait  # noqa: E402
from omfa.pose.presets import load_presets  # noqa: E402

UPLOAD_SCALE = 3  # the 128x96 canvas -> 384x288, the size of a small upload
MAX_PORTRAIT_YAW = 25.0  # portraits face the camera
CANDIDATES = 48  # test groups tried before giving up


def enlarge(image: np.ndarray) -> Image.Image:
    """A canvas render (H, W, 3) enlarged like an upload."""
    pil = Image.fromarray(image)
    return pil.resize((pil.width * UPLOAD_SCALE, pil.height * UPLOAD_SCALE), Image.Resampling.LANCZOS)


def is_person(image: Image.Image, size_hw: tuple[int, int]) -> bool:
    """Whether the app's preprocessing, at canvas size `size_hw`, finds one person in `image`."""
    try:
        prepare_portrait(np.asarray(image), size_hw=size_hw)
    except ImageInputError:
        return False
    return True


def is_flat(image: Image.Image, size_hw: tuple[int, int]) -> bool:
    """Whether the app's preprocessing, at canvas size `size_hw`, takes `image` for a flat garment."""
    try:
        return prepare_garment(np.asarray(image), size_hw=size_hw).kind == "flat"
    except ImageInputError:
        return False


def pick(room: FittingRoom, config: SynthConfig, partition: dict) -> tuple[list[Image.Image], dict[str, Image.Image]]:
    """Three portraits facing the camera, with distinct identities, poses and garments, and a top
    and a bottom that none of them wears, all passing preprocessing."""
    people: list[Image.Image] = []
    seen: set[str] = set()  # identities, presets and garments already shown
    garments: dict[str, tuple[str, Image.Image]] = {}  # slot -> (garment id, shop image)
    for group in range(CANDIDATES):
        spec = sample_spec(config, "test", group * GROUP_SIZE, room.presets, partition)
        worn = {spec.identity.identity_id, spec.view_ref.preset, *(g.garment_id for g in spec.outfit_a)}
        facing = abs(spec.view_ref.yaw_deg) <= MAX_PORTRAIT_YAW
        candidates = [
            (slot, g)
            for slot, g in zip(("upper", "lower"), spec.outfit_b)
            if slot not in garments and g.garment_id not in seen | worn
        ]
        wanted = len(people) < 3 and facing and not worn & seen
        if not wanted and not candidates:
            continue
        sample = room.render(spec)
        size_hw = sample["reference"].shape[:2]  # the canvas the room renders, the shipped model's
        if wanted and is_person(enlarge(sample["reference"]), size_hw):
            people.append(enlarge(sample["reference"]))
            seen |= worn
        for slot, garment in candidates:
            shop = enlarge(sample[f"{slot}_b"])
            if garment.garment_id not in seen and is_flat(shop, size_hw):
                garments[slot] = (garment.garment_id, shop)
        if len(people) == 3 and len(garments) == 2:
            if any(garment_id in seen for garment_id, _ in garments.values()):
                garments = {s: g for s, g in garments.items() if g[0] not in seen}
                continue
            return people, {slot: shop for slot, (_, shop) in garments.items()}
    raise SystemExit(
        f"found {len(people)} of 3 portraits and {len(garments)} of 2 garments in {CANDIDATES} "
        "test groups; try another --seed"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "examples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic test split")
    args = parser.parse_args(argv)

    presets = load_presets()
    config = SynthConfig(seed=args.seed, counts={"train": 0, "val": 0, "test": CANDIDATES * GROUP_SIZE})
    room = FittingRoom(presets, size_hw=config.size_hw)
    try:
        people, garments = pick(room, config, split_presets(list(presets), args.seed))
    finally:
        room.close()
    from skimage import data

    images = {
        "portrait.png": people[0],
        "portrait_2.png": people[1],
        "dressed.png": people[2],
        "top.png": garments["upper"],
        "bottom.png": garments["lower"],
        "astronaut.png": Image.fromarray(data.astronaut()).resize((384, 384), Image.Resampling.LANCZOS),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        path = args.out / name
        image.save(path, optimize=True)
        print(f"wrote {path} ({image.width}x{image.height}, {path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
