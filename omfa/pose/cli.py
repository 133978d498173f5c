"""`omfa pose`: list, render and estimate SMPL-X poses.

    omfa pose list
    omfa pose render NAME|pose.json [--yaw DEG] [--style thumbnail|map] [--size HxW] --out FILE(.png|.glb)
    omfa pose from-photo IMAGE --out pose.json [--preview preview.png]
    omfa pose sheet --out docs/pose_sheet.png [--columns 6]

`--body smplx --smplx-dir DIR` renders with the SMPL-X model instead of the mannequin.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omfa.cli import parse_size
from omfa.pose.body import Body, BodyModelError, load_body
from omfa.pose.presets import PosePreset, PresetError, get_preset, load_presets, read_preset, write_preset

if TYPE_CHECKING:  # rendering loads OpenGL: imported only by the commands that draw
    from omfa.pose.render import PoseRenderer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omfa pose", description="List, render and estimate SMPL-X poses.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the pose presets")

    render = commands.add_parser("render", help="render a preset or a pose file")
    render.add_argument("pose", help="preset name, or a pose .json file (as written by from-photo)")
    render.add_argument("--yaw", type=float, default=None, help="camera yaw in degrees (default: the preset's)")
    render.add_argument(
        "--style",
        choices=("thumbnail", "map", "surface"),
        default="thumbnail",
        help="shaded thumbnail, or a pose condition: part colours (map) or surface coordinates",
    )
    render.add_argument("--size", type=parse_size, default=None, help="HEIGHTxWIDTH (default 256x256 / 128x96)")
    render.add_argument("--out", required=True, type=Path, help="output .png (or .glb for a 3-D model)")

    photo = commands.add_parser("from-photo", help="estimate a pose from a photograph of one person")
    photo.add_argument("image", type=Path)
    photo.add_argument("--out", required=True, type=Path, help="output pose .json (preset format)")
    photo.add_argument("--preview", type=Path, default=None, help="also write photo | thumbnail side by side")

    sheet = commands.add_parser("sheet", help="contact sheet of every preset")
    sheet.add_argument("--out", required=True, type=Path)
    sheet.add_argument("--columns", type=int, default=6)
    sheet.add_argument("--cell", type=int, default=192, help="thumbnail side in pixels")

    for sub in (render, photo, sheet):
        sub.add_argument("--body", choices=("mannequin", "smplx"), default="mannequin")
        sub.add_argument("--smplx-dir", default=None, help="folder with SMPLX_NEUTRAL.npz (or OMFA_SMPLX_DIR)")
    return parser


def _resolve(spec: str) -> PosePreset:
    """A preset name or the path of a pose file."""
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        return read_preset(path)
    return get_preset(spec)


def contact_sheet(
    presets: Sequence[PosePreset], body: Body, renderer: PoseRenderer, columns: int = 6, cell: int = 192
) -> np.ndarray:
    """One shaded thumbnail per preset (at its default yaw), labelled, in a grid: (H, W, 3) uint8."""
    from PIL import Image, ImageDraw, ImageFont

    label_h = 18
    rows = -(-len(presets) // columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for index, preset in enumerate(presets):
        image = renderer.thumbnail(body.posed(preset.pose), preset.yaw_deg, (cell, cell))
        left, top = (index % columns) * cell, (index // columns) * (cell + label_h)
        sheet.paste(Image.fromarray(image), (left, top))
        text = preset.label + (f" (yaw {preset.yaw_deg:g})" if preset.yaw_deg else "")
        width = draw.textlength(text, font=font)
        draw.text((left + (cell - width) / 2, top + cell + 1), text, fill=(30, 30, 30), font=font)
    return np.asarray(sheet)


def _run(args: argparse.Namespace) -> int:
    from PIL import Image

    if args.command == "list":
        for preset in load_presets().values():
            yaw = f"  yaw {preset.yaw_deg:g}" if preset.yaw_deg else ""
            print(f"{preset.name:<22} {preset.label:<24} [{', '.join(preset.tags)}]{yaw}")
        return 0

    body = load_body(args.body, args.smplx_dir)
    from omfa.pose.render import PoseRenderer, export_glb

    if args.command == "render":
        preset = _resolve(args.pose)
        mesh = body.posed(preset.pose)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix.lower() == ".glb":
            export_glb(mesh, args.out)
        else:
            yaw = preset.yaw_deg if args.yaw is None else args.yaw
            with PoseRenderer() as renderer:
                if args.style in ("map", "surface"):  # exactly what a model is conditioned on
                    from omfa.pose.condition import pose_condition
                    from omfa.pose.lowpoly import LowPolyBody

                    kind = "parts" if args.style == "map" else "surface"
                    image = pose_condition(
                        renderer, LowPolyBody(body).posed(preset.pose), yaw, args.size or (128, 96), kind
                    )
                else:
                    image = renderer.thumbnail(mesh, yaw, args.size or (256, 256))
            Image.fromarray(image).save(args.out)
        print(f"wrote {args.out}")
        return 0

    if args.command == "from-photo":
        from omfa.imaging.loading import load_image
        from omfa.pose.estimate import estimate_pose

        photo = np.asarray(load_image(args.image))
        estimated = estimate_pose(photo)
        name = "".join(c if c.isalnum() else "_" for c in args.image.stem.lower()).strip("_") or "photo"
        preset = PosePreset(name=name, tags=("from_photo",), pose=estimated.pose, yaw_deg=0.0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_preset(preset, args.out)
        print(f"wrote {args.out} (confidence {estimated.confidence:.2f})")
        if args.preview is not None:
            with PoseRenderer() as renderer:
                thumb = renderer.thumbnail(body.posed(estimated.pose), 0.0, (256, 256))
            scale = 256 / photo.shape[0]
            left = Image.fromarray(photo).resize((max(1, round(photo.shape[1] * scale)), 256))
            canvas = Image.new("RGB", (left.width + 256, 256), (255, 255, 255))
            canvas.paste(left, (0, 0))
            canvas.paste(Image.fromarray(thumb), (left.width, 0))
            canvas.save(args.preview)
            print(f"wrote {args.preview}")
        return 0

    presets = list(load_presets().values())
    with PoseRenderer() as renderer:
        image = contact_sheet(presets, body, renderer, args.columns, args.cell)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(presets)} presets)")
    return 0


def main(argv: list[str]) -> int:
    """Entry point for `omfa pose ...`; returns the exit status."""
    args = _parser().parse_args(argv[1:])  # argv[0] is the command name
    try:
        return _run(args)
    except (PresetError, BodyModelError, ValueError) as error:
        print(f"omfa pose: {error}", file=sys.stderr)
        return 2
