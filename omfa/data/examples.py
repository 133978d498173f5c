"""How a dataset sample becomes a training example or an evaluation case.

A sample (`omfa.data.shards` for the synthetic fitting room, `omfa.data.real`
for photographs) is a dict of images, label maps and masks. This module is
the one place that knows which of its keys fill which canvas slot:

- `sample_tasks(sample)`: the tasks a sample supervises;
- `example_from_sample(sample, task, rng, pose_condition)`: one task on the
  canvas, as the tensors training batches are made of (`target_pose`: its pose input);
- `cases_from_sample(sample, families)`: model inputs and exact ground truth
  for evaluation (`Case`);
- `LABELS`: the label ids of every label map (synthetic and real loaders alike).

The slot rules, per task:
- try-on and outfit: the portrait `reference` (outfit A) and the new garments
  `upper_b` / `lower_b` are conditions; the target is `person`, who wears
  outfit B in the target pose;
- multi-view: the portrait alone; the target is `person_same` (outfit A, target pose);
- try-off: a dressed image is the condition and its own shop images the
  targets: the portrait with `*_a`, or the person with `*_b` (`TRY_OFF_SOURCES`).

The pose condition joined to the person slot is the target view's map of the
model's kind (`omfa.pose.condition`): synthetic samples of format 2 store
both "pose" (part colours) and "surface" (dense rest-body coordinates); real
loaders store part colours only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from omfa.canvas import SLOT_INDEX, SLOTS, TASKS, get_task, image_to_tensor
from omfa.pose.condition import DEFAULT_POSE_CONDITION, POSE_CONDITIONS, sample_key

if TYPE_CHECKING:  # torch is imported where tensors are made, so the data generator does not load it
    import torch

# Label map values (`labels_*` of a sample): one id per pixel, no anti-aliasing.
LABELS: dict[str, int] = {"background": 0, "skin": 1, "hair": 2, "upper": 3, "lower": 4, "shoes": 5}

# Which dressed image feeds a try-off, and whose shop images are then its truth:
# the portrait wears outfit A, the person outfit B.
TRY_OFF_SOURCES: tuple[tuple[str, str], ...] = (("reference", "a"), ("person", "b"))

# Evaluation families: the tasks scored together (outfit try-off has no family of its own:
# its two targets are the two single try-offs').
FAMILIES: dict[str, tuple[str, ...]] = {
    "try_on": ("try_on_upper", "try_on_lower", "outfit"),
    "try_off": ("try_off_upper", "try_off_lower"),
    "multiview": ("multiview",),
}

# try-on task -> the garment slots it replaces
_TRY_ON_GARMENTS: dict[str, tuple[str, ...]] = {
    "try_on_upper": ("upper",),
    "try_on_lower": ("lower",),
    "outfit": ("upper", "lower"),
}


def sample_tasks(sample: dict) -> list[str]:
    """Task names a synthetic or real sample supports.

    Real samples list theirs (`tasks`); a synthetic one supports every try-off,
    multi-view and outfit, and the single try-on of the garment outfit B replaced.
    """
    if "tasks" in sample:
        return [t for t in sample["tasks"] if t in TASKS]
    replaced = sample["meta"]["replaced"]
    tasks = ["try_off_upper", "try_off_lower", "try_off_outfit", "multiview", "outfit"]
    if replaced == "upper":
        tasks.append("try_on_upper")
    if replaced == "lower":
        tasks.append("try_on_lower")
    return tasks


def target_pose(sample: dict, pose_condition: str = DEFAULT_POSE_CONDITION) -> np.ndarray | None:
    """The target view's pose condition of kind `pose_condition`, or None for a part-colour map the sample lacks.

    A missing map of any other kind is an error: only the synthetic fitting room renders them.
    """
    key = sample_key(pose_condition)
    if key in sample:
        return sample[key]
    if pose_condition == DEFAULT_POSE_CONDITION:
        return None  # real data without a pose function: the model sees a blank map, as before
    where = sample.get("meta", {}).get("dataset") or sample.get("meta", {}).get("key") or "this sample"
    maps = [k for k in POSE_CONDITIONS.values() if k in sample]
    raise ValueError(
        f"{where} has no {key!r} map for pose condition {pose_condition!r} (it has {maps or 'no pose map'}); "
        f"only synthetic datasets (omfa synth) store {key!r}: train on one, or train on real data with "
        f"pose condition {DEFAULT_POSE_CONDITION!r} (--pose-condition {DEFAULT_POSE_CONDITION})"
    )


def _slot_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A sample image as canvas values: uint8 (H, W, 3) -> (3, H, W) in [-1, 1]; a tensor is already
    canvas values (the (C, h, w) latents of `omfa.training.latents.LatentDataset`) and is used as is."""
    return image if not isinstance(image, np.ndarray) else image_to_tensor(image)


def example_from_sample(
    sample: dict, task_name: str, rng: np.random.Generator, pose_condition: str = DEFAULT_POSE_CONDITION
) -> dict[str, torch.Tensor]:
    """Fill the canvas for `task_name` from one data sample.

    Returns `images` (S, 3, H, W) with zeros in absent slots, `pose` (3, H, W)
    (the target view's map of kind `pose_condition`; zeros when the task has no
    pose) and `roles` (S,) long; a sample of latents (C, h, w) gives (S, C, h, w)
    and (C, h, w). `rng` picks among equivalent fillings (which dressed image
    feeds a try-off).
    """
    import torch

    task = get_task(task_name)
    filled: dict[str, np.ndarray | torch.Tensor] = {}
    if task.name.startswith("try_off"):
        source, outfit = TRY_OFF_SOURCES[int(rng.integers(len(TRY_OFF_SOURCES)))]
        if source not in sample:  # real data may have only one dressed image
            source, outfit = "reference", "a"
        filled["reference"] = sample[source]
        for slot in task.targets:
            filled[slot] = sample[f"{slot}_{outfit}"]
    elif task.name == "multiview":
        filled["reference"] = sample["reference"]
        filled["person"] = sample["person_same"]
    else:  # try-on: the person wears outfit B
        filled["reference"] = sample["reference"]
        filled["person"] = sample["person"]
        for slot in ("upper", "lower"):
            if slot in task.conditions:
                filled[slot] = sample[f"{slot}_b"]
    ref = sample["reference"]
    shape = (3, *ref.shape[:2]) if isinstance(ref, np.ndarray) else tuple(ref.shape)  # one slot's (C, H, W)
    images = torch.zeros(len(SLOTS), *shape)
    for slot, image in filled.items():
        images[SLOT_INDEX[slot]] = _slot_tensor(image)
    pose = target_pose(sample, pose_condition) if task.uses_pose else None
    pose_t = _slot_tensor(pose) if pose is not None else torch.zeros(shape)
    roles = torch.tensor([int(r) for r in task.roles()], dtype=torch.long)
    return {"images": images, "pose": pose_t, "roles": roles}


# ----------------------------------------------------------------------------
# Evaluation cases: one model input and its exact ground truth


@dataclass
class Case:
    """One evaluation input and its ground truth.

    `inputs` are the pipeline's keyword arguments (reference / upper / lower /
    pose); its `pose` is the part-colour map, which the baselines read (they
    need part labels). `poses` holds the target view's map of every pose
    condition kind the sample has, so each model gets the kind it was trained
    with (`model_inputs`).
    """

    task: str
    inputs: dict[str, np.ndarray]
    target_slot: str
    truth: np.ndarray
    region: np.ndarray  # person or garment mask (H, W) bool
    garment: np.ndarray  # garment pixels of the truth (H, W) bool
    labels_reference: np.ndarray | None
    poses: dict[str, np.ndarray] = field(default_factory=dict)  # pose condition kind -> (H, W, 3) uint8

    def model_inputs(self, pose_condition: str) -> dict[str, np.ndarray]:
        """`inputs` with the pose map of kind `pose_condition` (what a model of that kind sees)."""
        if "pose" not in self.inputs:
            return self.inputs
        if pose_condition in self.poses:
            return self.inputs | {"pose": self.poses[pose_condition]}
        if pose_condition == DEFAULT_POSE_CONDITION:  # inputs["pose"] is the part-colour map
            return self.inputs
        raise ValueError(
            f"the {self.task} case has no {pose_condition!r} pose map (it has {sorted(self.poses)}); "
            f"evaluate a {pose_condition!r} model on a synthetic dataset, which stores every kind"
        )


def cases_from_sample(sample: dict, families: Iterable[str]) -> list[Case]:
    """The evaluation cases of one sample, for the tasks of `families` (keys of `FAMILIES`) it supports."""
    supported = set(sample_tasks(sample))
    ref = sample["reference"]
    labels_ref = sample.get("labels_reference")
    poses = {kind: sample[key] for kind, key in POSE_CONDITIONS.items() if key in sample}
    out = []
    for family in families:
        for task in FAMILIES[family]:
            if task not in supported:
                continue
            if task in _TRY_ON_GARMENTS:
                garments = _TRY_ON_GARMENTS[task]
                labels = sample["labels_person"]
                garment = np.isin(labels, [LABELS[g] for g in garments])
                inputs = {"reference": ref, "pose": sample["pose"]} | {g: sample[f"{g}_b"] for g in garments}
                out.append(Case(task, inputs, "person", sample["person"], labels > 0, garment, labels_ref, poses))
            elif task == "multiview":
                labels = sample["labels_person_same"]
                out.append(
                    Case(
                        task,
                        {"reference": ref, "pose": sample["pose"]},
                        "person",
                        sample["person_same"],
                        labels > 0,
                        np.isin(labels, [LABELS["upper"], LABELS["lower"]]),
                        labels_ref,
                        poses,
                    )
                )
            else:
                slot = task.removeprefix("try_off_")
                mask = sample[f"mask_{slot}_a"].astype(bool)
                out.append(Case(task, {"reference": ref}, slot, sample[f"{slot}_a"], mask, mask, labels_ref))
    return out
