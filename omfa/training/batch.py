"""A training batch: samples of one task stacked into targets, conditions and the pose map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from omfa.canvas import get_task
from omfa.data.examples import example_from_sample
from omfa.pose.condition import DEFAULT_POSE_CONDITION


@dataclass
class Batch:
    """One training batch of a single task configuration (slots fixed per batch).

    targets (B, T, C, H, W) and conditions (B, K, C, H, W) are clean images,
    pose (B, Cp, H, W) or None, condition_keep (B, K) bool.
    """

    targets: torch.Tensor
    target_slots: list[int]
    conditions: torch.Tensor | None
    condition_slots: list[int]
    pose: torch.Tensor | None
    condition_keep: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return Batch(
            move(self.targets),
            self.target_slots,
            move(self.conditions),
            self.condition_slots,
            move(self.pose),
            move(self.condition_keep),
        )


def collate(
    task: str, samples: list[dict], rng: np.random.Generator, pose_condition: str = DEFAULT_POSE_CONDITION
) -> Batch:
    """Samples -> a Batch of one task configuration (targets, conditions, pose of kind `pose_condition`)."""
    spec = get_task(task)
    examples = [example_from_sample(s, task, rng, pose_condition) for s in samples]
    images = torch.stack([e["images"] for e in examples])  # (B, S, 3, H, W)
    targets, conditions = spec.slot_indices()
    return Batch(
        targets=images[:, targets],
        target_slots=targets,
        conditions=images[:, conditions] if conditions else None,
        condition_slots=conditions,
        pose=torch.stack([e["pose"] for e in examples]) if spec.uses_pose else None,
    )
