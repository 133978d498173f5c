"""The synthetic fitting room: what each sample shows, decided from a seed.

A sample is one identity and two outfits:

- `reference`: outfit A, pose 1, yaw 1 (the user's portrait);
- `person`: outfit B at pose 2, yaw 2, where B replaces the upper, the lower
  or both garments of A (try-on ground truth);
- `person_same`: outfit A at pose 2, yaw 2 (multi-view ground truth);
- the pose maps of both poses and the shop images of every garment involved
  (try-off ground truth).

This module only *plans* samples (`SampleSpec`); `omfa.data.fitting_room` draws
them. Everything is a pure function of (seed, split, index), so any worker
can produce any sample and the same seed gives the same dataset.

Splits are disjoint in garments, identities and poses: each split has its own
garment and identity pools (own ids, own random streams) and its own share of
the pose presets. A few neutral presets stay in train, where the model needs
them most. Test samples come in multi-view groups of `GROUP_SIZE`: the same
identity and outfits, the same portrait, and a gallery of poses and yaws
around the body.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omfa.data.garments import GarmentSpec, sample_garment
from omfa.data.people import Identity, sample_identity
from omfa.pose.body import NUM_BODY_JOINTS, Pose
from omfa.pose.presets import PosePreset

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
GROUP_SIZE = 8  # samples per multi-view test group
TRAIN_ANCHORS: tuple[str, ...] = ("a_pose", "t_pose", "relaxed_stand")
SPLIT_SHARE = {"val": 0.1, "test": 0.2}
GARMENTS_PER_SAMPLE = 0.25  # pool size per slot, relative to the split's sample count
PEOPLE_PER_SAMPLE = 0.1
WINDOW = 48  # samples draw garments and people from a sliding window of the pool
# Image size (height, width): 128x96 keeps the person about 96 px tall (a whole body in a 4:3 frame).
DEFAULT_SIZE_HW: tuple[int, int] = (128, 96)
# Sides are multiples of 8 so that every denoiser preset's patches tile the image.
MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE = 16, 1024, 8

# Perturbation amplitude (radians, uniform +-) per body_pose row, by joint.
_AMPLITUDE = np.array(
    [
        0.15,
        0.15,
        0.06,
        0.2,
        0.2,
        0.06,
        0.1,
        0.1,
        0.06,
        0.05,
        0.05,  # hips, spine1, knees, spine2, ankles, spine3, feet
        0.08,
        0.06,
        0.06,
        0.1,
        0.22,
        0.22,
        0.25,
        0.25,
        0.15,
        0.15,  # neck, collars, head, shoulders, elbows, wrists
    ]
)
assert len(_AMPLITUDE) == NUM_BODY_JOINTS


class SynthConfigError(ValueError):
    """A dataset configuration that cannot be generated."""


@dataclass(frozen=True)
class SynthConfig:
    """What to generate: sample counts per split, the image size and the seed everything derives from.

    `size_hw` (height, width) px is every image's size, and so the canvas of
    the models trained on the dataset (`omfa train` reads it from dataset.json).
    """

    seed: int = 0
    counts: Mapping[str, int] = field(default_factory=lambda: {"train": 12000, "val": 200, "test": 400})
    size_hw: tuple[int, int] = DEFAULT_SIZE_HW
    # The pose presets' split into train / val / test derives from this seed (None: `seed`).
    # A fresh test set for a trained model keeps the partition of its training data
    # (its test poses stay unseen) and draws new garments, people and perturbations from `seed`.
    partition_seed: int | None = None

    @property
    def preset_seed(self) -> int:
        """The seed of the preset partition (`split_presets`)."""
        return self.seed if self.partition_seed is None else self.partition_seed

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size_hw)
        if len(size) != 2 or any(v < MIN_SIDE or v > MAX_SIDE or v % SIDE_MULTIPLE for v in size):
            raise SynthConfigError(
                f"image size {'x'.join(map(str, size))} px is not possible; use HEIGHTxWIDTH with each side a "
                f"multiple of {SIDE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE} px (for example 128x96 or 64x48)"
            )
        object.__setattr__(self, "size_hw", size)  # a list read from JSON compares equal to the tuple
        for split, count in self.counts.items():
            if split not in SPLITS:
                raise SynthConfigError(f"split {split!r} is unknown; use {', '.join(SPLITS)}")
            if count < 0:
                raise SynthConfigError(f"{split} count {count} is negative; pass 0 or more samples")
        if self.counts.get("test", 0) % GROUP_SIZE:
            raise SynthConfigError(
                f"test count {self.counts['test']} is not a multiple of {GROUP_SIZE}; "
                f"test samples come in multi-view groups of {GROUP_SIZE}"
            )

    def to_json(self) -> dict[str, Any]:
        own = {} if self.partition_seed is None else {"partition_seed": self.partition_seed}
        return {"seed": self.seed, "counts": dict(self.counts), "size_hw": list(self.size_hw)} | own


@dataclass(frozen=True)
class ViewSpec:
    """A pose preset with its perturbation seed, and the camera yaw."""

    preset: str
    perturbation_seed: int
    yaw_deg: float


@dataclass(frozen=True)
class SampleSpec:
    """Everything one sample shows. `outfit_*` are (upper, lower) garments."""

    key: str
    split: str
    index: int
    identity: Identity
    outfit_a: tuple[GarmentSpec, GarmentSpec]
    outfit_b: tuple[GarmentSpec, GarmentSpec]
    replaced: str  # "upper", "lower" or "both"
    view_ref: ViewSpec
    view: ViewSpec
    group: int | None

    def meta(self) -> dict[str, Any]:
        """JSON-ready description (stored with the sample as `meta`)."""
        return {
            "key": self.key,
            "split": self.split,
            "index": self.index,
            "group": self.group,
            "identity": self.identity.to_json(),
            "identity_id": self.identity.identity_id,
            "garments": {
                "upper_a": self.outfit_a[0].to_json(),
                "lower_a": self.outfit_a[1].to_json(),
                "upper_b": self.outfit_b[0].to_json(),
                "lower_b": self.outfit_b[1].to_json(),
            },
            "garment_ids": {
                "upper_a": self.outfit_a[0].garment_id,
                "lower_a": self.outfit_a[1].garment_id,
                "upper_b": self.outfit_b[0].garment_id,
                "lower_b": self.outfit_b[1].garment_id,
            },
            "replaced": self.replaced,
            "preset_ref": self.view_ref.preset,
            "perturbation_seed_ref": self.view_ref.perturbation_seed,
            "yaw_ref": self.view_ref.yaw_deg,
            "preset": self.view.preset,
            "perturbation_seed": self.view.perturbation_seed,
            "yaw": self.view.yaw_deg,
        }


# ----------------------------------------------------------------------------
# Splits and pools


def split_presets(names: list[str] | tuple[str, ...], seed: int) -> dict[str, tuple[str, ...]]:
    """Partition preset names into train / val / test (deterministic from the seed).

    Anchors (neutral stances) stay in train; val and test get at least one
    preset each (two when there are enough).
    """
    names = sorted(names)
    if len(names) < 3:
        raise SynthConfigError(f"need at least 3 pose presets to split into train/val/test, got {len(names)}")
    rng = np.random.default_rng([seed, 7])
    free = [n for n in names if n not in TRAIN_ANCHORS]
    free = [free[i] for i in rng.permutation(len(free))]
    n_test = max(1, round(SPLIT_SHARE["test"] * len(names)))
    n_val = max(1, round(SPLIT_SHARE["val"] * len(names)))
    test, val = free[:n_test], free[n_test : n_test + n_val]
    train = [n for n in names if n not in test and n not in val]
    return {"train": tuple(train), "val": tuple(sorted(val)), "test": tuple(sorted(test))}


def pool_size(count: int, per_sample: float) -> int:
    """Pool size for a split of `count` samples (at least one window's worth)."""
    return max(8, int(np.ceil(count * per_sample)))


@functools.lru_cache(maxsize=4096)
def garment(seed: int, split: str, slot: str, j: int) -> GarmentSpec:
    """Garment j of a split's pool for `slot`."""
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 1, 0 if slot == "upper" else 1, j])
    return sample_garment(rng, slot, f"{split}-{slot[0]}{j:05d}")


@functools.lru_cache(maxsize=4096)
def identity(seed: int, split: str, j: int) -> Identity:
    """Identity j of a split's pool."""
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 2, j])
    return sample_identity(rng, f"{split}-p{j:05d}")


def _window_pick(rng: np.random.Generator, index: int, count: int, pool: int) -> int:
    """A pool member near position index/count, so nearby samples share garments (cache hits)."""
    center = int(index / max(count, 1) * pool)
    return int(np.clip(center + rng.integers(-WINDOW // 2, WINDOW // 2 + 1), 0, pool - 1))


# ----------------------------------------------------------------------------
# Poses


def perturbed_pose(preset: PosePreset, perturbation_seed: int) -> Pose:
    """The preset plus a uniform perturbation per joint, within joint limits.

    Knees only bend forwards and elbows only bend inwards (limits widened to
    include the preset itself).
    """
    rng = np.random.default_rng([perturbation_seed, 11])
    base = preset.pose.body_pose
    body = base + rng.uniform(-1.0, 1.0, base.shape) * _AMPLITUDE[:, None]
    lo, hi = np.full(base.shape, -np.pi), np.full(base.shape, np.pi)
    lo[3:5, 0] = 0.0  # knee flexion (x) >= 0
    hi[17, 1] = 0.05  # left elbow bends with y < 0
    lo[18, 1] = -0.05  # right elbow bends with y > 0
    body = np.clip(body, np.minimum(lo, base), np.maximum(hi, base))
    orient = preset.pose.global_orient + rng.uniform(-0.04, 0.04, 3)
    return Pose(orient, body)


def _view(
    rng: np.random.Generator, presets: Mapping[str, PosePreset], names: tuple[str, ...], portrait: bool
) -> ViewSpec:
    weights = np.array([2.0 if portrait and "standing" in presets[n].tags else 1.0 for n in names])
    name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    yaw = presets[name].yaw_deg + rng.uniform(-30 if portrait else -45, 30 if portrait else 45)
    return ViewSpec(name, int(rng.integers(2**31)), round(float(yaw), 2))


# ----------------------------------------------------------------------------
# Samples


def sample_spec(
    config: SynthConfig,
    split: str,
    index: int,
    presets: Mapping[str, PosePreset],
    partition: Mapping[str, tuple[str, ...]],
) -> SampleSpec:
    """Plan sample `index` of `split`: a pure function of the seed, split and index."""
    count = config.counts[split]
    if not 0 <= index < count:
        raise SynthConfigError(f"{split} sample {index} does not exist; the split has {count} samples")
    names = partition[split]
    group = index // GROUP_SIZE if split == "test" else None
    # Members of a test group share everything but the target view.
    plan_index = group * GROUP_SIZE if group is not None else index
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[split], 3, plan_index])
    n_garments = pool_size(count, GARMENTS_PER_SAMPLE)
    n_people = pool_size(count, PEOPLE_PER_SAMPLE)
    person = identity(config.seed, split, _window_pick(rng, plan_index, count, n_people))
    picks = [_window_pick(rng, plan_index, count, n_garments) for _ in range(4)]
    if picks[2] == picks[0]:
        picks[2] = (picks[2] + 1) % n_garments
    if picks[3] == picks[1]:
        picks[3] = (picks[3] + 1) % n_garments
    upper_a, lower_a = garment(config.seed, split, "upper", picks[0]), garment(config.seed, split, "lower", picks[1])
    upper_new, lower_new = (
        garment(config.seed, split, "upper", picks[2]),
        garment(config.seed, split, "lower", picks[3]),
    )
    replaced = ("upper", "lower", "both")[int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
    outfit_b = (upper_new if replaced != "lower" else upper_a, lower_new if replaced != "upper" else lower_a)
    view_ref = _view(rng, presets, names, portrait=True)
    if group is None:
        view = _view(rng, presets, names, portrait=False)
    else:
        # The gallery: 8 yaws around the body, cycling through the split's presets.
        k = index % GROUP_SIZE
        gallery = np.random.default_rng([config.seed, _SPLIT_CODE[split], 4, group])
        name = names[(k + int(gallery.integers(len(names)))) % len(names)]
        view = ViewSpec(name, int(gallery.integers(2**31)) + k, round(float(presets[name].yaw_deg + 45.0 * k), 2))
    return SampleSpec(
        key=f"{split}-{index:06d}",
        split=split,
        index=index,
        identity=person,
        outfit_a=(upper_a, lower_a),
        outfit_b=outfit_b,
        replaced=replaced,
        view_ref=view_ref,
        view=view,
        group=group,
    )


def spec_digest(spec: GarmentSpec | Identity) -> str:
    """A content hash of a garment or identity without its id (for disjointness checks)."""
    data = spec.to_json()
    data.pop("garment_id", None)
    data.pop("identity_id", None)
    return hashlib.sha1(repr(sorted(data.items())).encode()).hexdigest()[:16]
