"""Slots, roles and tasks of the joint canvas, and packing images into it.

(Work in progress: the constants below are the contract other modules rely on.)
"""

from __future__ import annotations

# Every slot image has this size (height, width) in pixels. 128x96 keeps the
# person at least 96 px tall (a whole body in a 4:3 portrait frame).
CANVAS_HW: tuple[int, int] = (128, 96)

# Background colour of person, reference and shop images (uint8 RGB). The pose
# map's background is black.
BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)
