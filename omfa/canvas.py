"""Slots, roles and tasks of the joint canvas, and packing images into it.

A canvas is a fixed set of image slots. A *task* gives each slot a role:
targets are noised and denoised, conditions stay clean (timestep 0), absent
slots are left out of attention entirely. One model learns every task by
seeing random task configurations during training, the way masked diffusion
language models learn from random subsets of masked tokens.

This is the vocabulary alone: which data sample fills which slot lives in
`omfa.data.examples`, and the slot images' size is the model's
(`OMFATransformer.config.sample_size`) or the dataset's, never a constant here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made, so `import omfa.canvas` stays light
    import torch

# The canvas size is not fixed here: it comes from the loaded model (`config.sample_size`,
# `OMFAPipeline.canvas_hw`) or the dataset (`ShardDataset.size_hw`).

# Background colour of person, reference and shop images (uint8 RGB). The pose
# map's background is black.
BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)

# Slot order is part of the model: slot embeddings are indexed by position here.
SLOTS: tuple[str, ...] = ("person", "reference", "upper", "lower")
SLOT_INDEX: dict[str, int] = {name: i for i, name in enumerate(SLOTS)}
PERSON = SLOT_INDEX["person"]  # the slot that carries the pose map channel-wise


class Role(IntEnum):
    """What a slot does in one task. Values index the role embedding."""

    TARGET = 0
    CONDITION = 1
    ABSENT = 2


@dataclass(frozen=True)
class Task:
    """A configuration of the canvas.

    `guidance` lists the conditions that the unconditional branch of
    classifier-free guidance drops (by masking their keys): guidance then pushes
    the target towards what those slots say.
    """

    name: str
    targets: tuple[str, ...]
    conditions: tuple[str, ...]
    guidance: tuple[str, ...]
    uses_pose: bool
    description: str

    def role(self, slot: str) -> Role:
        if slot in self.targets:
            return Role.TARGET
        if slot in self.conditions:
            return Role.CONDITION
        return Role.ABSENT

    def roles(self) -> tuple[Role, ...]:
        """Role of every slot, in `SLOTS` order."""
        return tuple(self.role(s) for s in SLOTS)

    def slot_indices(self) -> tuple[list[int], list[int]]:
        """(target slot indices, condition slot indices), each in `SLOTS` order.

        These are the slot ids the model embeds (`OMFATransformer(..., target_slots, ...,
        condition_slots)`); absent slots appear in neither list.
        """
        roles = self.roles()
        targets = [i for i, r in enumerate(roles) if r == Role.TARGET]
        conditions = [i for i, r in enumerate(roles) if r == Role.CONDITION]
        return targets, conditions


def _task(name, targets, conditions, guidance, description) -> tuple[str, Task]:
    return name, Task(name, targets, conditions, guidance, "person" in targets, description)


TASKS: dict[str, Task] = dict(
    [
        _task(
            "try_on_upper",
            ("person",),
            ("reference", "upper"),
            ("upper",),
            "the portrait's person wearing the new top, in the target pose; the lower garment is kept",
        ),
        _task(
            "try_on_lower",
            ("person",),
            ("reference", "lower"),
            ("lower",),
            "the portrait's person wearing the new bottom, in the target pose; the top is kept",
        ),
        _task(
            "outfit",
            ("person",),
            ("reference", "upper", "lower"),
            ("upper", "lower"),
            "the portrait's person wearing both new garments, in the target pose",
        ),
        _task(
            "try_off_upper",
            ("upper",),
            ("reference",),
            ("reference",),
            "the flat shop image of the top the person wears",
        ),
        _task(
            "try_off_lower",
            ("lower",),
            ("reference",),
            ("reference",),
            "the flat shop image of the bottom the person wears",
        ),
        _task(
            "try_off_outfit",
            ("upper", "lower"),
            ("reference",),
            ("reference",),
            "the flat shop images of both garments the person wears",
        ),
        _task(
            "multiview",
            ("person",),
            ("reference",),
            ("reference",),
            "the portrait's person, same outfit, in a new pose and view",
        ),
    ]
)


def get_task(name: str) -> Task:
    """Look up a task by name with an error that lists the valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


# ----------------------------------------------------------------------------
# Image <-> tensor. Model space is float in [-1, 1], channels first.


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]."""
    import torch

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB array of shape (H, W, 3), got {image.dtype} {image.shape}")
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [-1, 1] -> uint8 (H, W, 3). Values outside are clipped."""
    import torch

    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a tensor of shape (3, H, W), got {tuple(x.shape)}")
    x = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round()
    return x.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
