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
    ("reference", "reference (A)"),
    ("pose_ref", "pose 1"),
    ("person", "person (B)"),
    ("person_same", "person (A)"),
    ("pose", "pose 2"),
    ("labels_person", "labels (B)"),
    ("upper_a", "upper A"),
    ("lower_a", "lower A"),
    ("upper_b", "upper B"),
    ("lower_b", "lower B"),
)


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """uint8 (H, W) label map -> RGB (H, W, 3) with LABEL_COLORS."""
    return LABEL_COLORS[np.clip(labels, 0, len(LABEL_COLORS) - 1)]


def grid_sheet(
    rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], captions: Sequence[Sequence[str]] = (), scale: int = 2
) -> np.ndarray:
    """RGB uint8 sheet of equal-sized tiles: column titles on top, a few caption lines left of each row."""
    if not rows:
        raise ValueError("no rows for the sheet; pass at least one")
    h, w = rows[0][0].shape[:2]
    gap, title_h, side_w = 4, 18, 70
    strips = []
    for tiles in rows:
        padded = [np.pad(t, ((0, 0), (0, gap), (0, 0)), constant_values=235) for t in tiles]
        strips.append(np.pad(np.concatenate(padded, axis=1), ((0, gap), (0, 0), (0, 0)), constant_values=235))
    grid = np.concatenate(strips, axis=0)
    grid = np.asarray(
        Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST)
    )
    sheet = Image.new("RGB", (side_w + grid.shape[1], title_h + grid.shape[0]), (235, 235, 235))
    sheet.paste(Image.fromarray(grid), (side_w, title_h))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for c, title in enumerate(titles):
        draw.text((side_w + c * (w + gap) * scale + 2, 2), title, fill=(20, 20, 20), font=font)
    for r, lines in enumerate(captions):
        y = title_h + r * (h + gap) * scale + 4
        for line, text in enumerate(lines):
            draw.text((4, y + 16 * line), text, fill=(20, 20, 20), font=font)
    return np.asarray(sheet)


def contact_sheet(samples: Sequence[dict], scale: int = 2) -> np.ndarray:
    """RGB uint8 sheet: one row per sample, one column per slot, titles on top, `replaced` on the left."""
    if not samples:
        raise ValueError("no samples for the contact sheet; pass at least one")
    rows = [[colorize_labels(s[key]) if key.startswith("labels") else s[key] for key, _ in COLUMNS] for s in samples]
    captions = [
        (f"new: {s['meta']['replaced']}", s["meta"]["preset_ref"][:10], s["meta"]["preset"][:10]) for s in samples
    ]
    return grid_sheet(rows, [title for _, title in COLUMNS], captions, scale)
