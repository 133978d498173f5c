"""Contact sheets: every slot of a few samples side by side, with column titles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Label map colours for display: background, skin, hair, upper, lower, shoes.
LABEL_COLORS = np.array(
    [[255, 255, 255], [236, 188, 160], [90, 55, 30], [214, 60, 60], [60, 90, 214], [40, 170, 70]], dtype=np.uint8
)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("reference", "reference (A)"), ("pose_ref", "pose 1"), ("person", "person (B)"),
    ("person_same", "person (A)"), ("pose", "pose 2"), ("labels_person", "labels (B)"),
    ("upper_a", "upper A"), ("lower_a", "lower A"), ("upper_b", "upper B"), ("lower_b", "lower B"),
)  # fmt: skip


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """uint8 (H, W) label map -> RGB (H, W, 3) with LABEL_COLORS."""
    return LABEL_COLORS[np.clip(labels, 0, len(LABEL_COLORS) - 1)]


def contact_sheet(samples: Sequence[dict], scale: int = 2) -> np.ndarray:
    """RGB uint8 sheet: one row per sample, one column per slot, titles on top, `replaced` on the left."""
    if not samples:
        raise ValueError("no samples for the contact sheet; pass at least one")
    h, w = samples[0]["reference"].shape[:2]
    gap, title_h, side_w = 4, 18, 70
    rows = []
    for sample in samples:
        tiles = []
        for key, _ in COLUMNS:
            image = colorize_labels(sample[key]) if key.startswith("labels") else sample[key]
            tiles.append(np.pad(image, ((0, 0), (0, gap), (0, 0)), constant_values=235))
        rows.append(np.pad(np.concatenate(tiles, axis=1), ((0, gap), (0, 0), (0, 0)), constant_values=235))
    grid = np.concatenate(rows, axis=0)
    grid = np.asarray(Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST))
    sheet = Image.new("RGB", (side_w + grid.shape[1], title_h + grid.shape[0]), (235, 235, 235))
    sheet.paste(Image.fromarray(grid), (side_w, title_h))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for c, (_, title) in enumerate(COLUMNS):
        draw.text((side_w + c * (w + gap) * scale + 2, 2), title, fill=(20, 20, 20), font=font)
    for r, sample in enumerate(samples):
        meta = sample["meta"]
        y = title_h + r * (h + gap) * scale + 4
        for line, text in enumerate((f"new: {meta['replaced']}", meta["preset_ref"][:10], meta["preset"][:10])):
            draw.text((4, y + 16 * line), text, fill=(20, 20, 20), font=font)
    return np.asarray(sheet)
