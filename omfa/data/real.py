"""Loaders for real try-on datasets, yielding the synthetic sample format.

Each loader is a `Sequence` of dicts with the keys of `omfa.data.shards`
that the dataset has, plus `tasks` (the task names the sample supervises)
and `meta`. Images are fitted to `size_hw`, the canvas of the model they feed
(padded to its aspect ratio with white, then resized); label maps use the
synthetic label ids (`omfa.data.examples.LABELS`: 0 background, 1 skin,
2 hair, 3 upper, 4 lower, 5 shoes), mapped from each dataset's parsing classes.

- `VitonHD(root, split)`: upper-body photos with their garment. Paired lists
  give try-off samples (`reference` + `upper_a`); unpaired lists have no
  ground truth, so `tasks` is empty and `meta["unpaired_tasks"]` names the
  try-on they can be evaluated on (`upper_b` holds the new garment).
- `DressCode(root, split)`: the same for `upper_body/`, `lower_body/` and
  `dresses/`. A dress fills the `upper` slot (`meta["dress"]` is true) and
  is labelled 3 (upper) in label maps.
- `DeepFashionMultiModal(root)`: several views of one person in one outfit
  and no shop images: pairs of views give multi-view samples (`reference`
  and `person_same`).

`pose_fn` (optional) maps a photo to a pose map; `estimator_pose_fn(size_hw)`
builds one from the pose estimator and the pose renderer. It draws part
colours (pose condition "parts"): real samples have no "surface" maps. The datasets cannot be
downloaded here; the loaders check each dataset's exact layout and raise
`RealDatasetError` naming the path and the expected layout.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from omfa.canvas import BACKGROUND_RGB

PoseFn = Callable[[np.ndarray], np.ndarray]

VITON_HD_LAYOUT = "ROOT/{train,test}_pairs.txt and ROOT/{train,test}/{image,cloth,image-parse-v3}/"
DRESSCODE_LAYOUT = (
    "ROOT/<category>/images/<id>_0.jpg (person) and <id>_1.jpg (garment), ROOT/<category>/label_maps/<id>_4.png, "
    "ROOT/<category>/{train_pairs.txt,test_pairs_paired.txt,test_pairs_unpaired.txt} for category in "
    "upper_body, lower_body, dresses"
)
DEEPFASHION_MM_LAYOUT = (
    "ROOT/images/<name>.jpg and ROOT/segm/<name>_segm.png (names like MEN-Denim-id_00000080-01_7_additional)"
)

# Parsing classes -> synthetic labels (0 bg, 1 skin, 2 hair, 3 upper, 4 lower, 5 shoes).
# VITON-HD image-parse-v3 (LIP order; 10 is the neck).
VITON_HD_LABELS = np.array([0, 2, 2, 1, 1, 3, 3, 3, 1, 4, 1, 3, 4, 1, 1, 1, 1, 1, 5, 5], dtype=np.uint8)
# DressCode label_maps (18 classes: bg, hat, hair, sunglasses, upper, skirt, pants, dress, belt,
# left/right shoe, head, left/right leg, left/right arm, bag, scarf).
DRESSCODE_LABELS = np.array([0, 2, 2, 1, 3, 4, 4, 3, 4, 5, 5, 1, 1, 1, 1, 1, 0, 3], dtype=np.uint8)
# DeepFashion-MultiModal segm (24 classes, see the dataset's README).
DEEPFASHION_MM_LABELS = np.array(
    [0, 3, 3, 4, 3, 4, 4, 2, 1, 3, 4, 5, 0, 2, 1, 1, 1, 1, 1, 1, 1, 3, 1, 3], dtype=np.uint8
)


class RealDatasetError(ValueError):
    """A dataset folder, list or file that is missing or malformed."""


def fit_to_canvas(image: Image.Image, size_hw: tuple[int, int], labels: bool = False) -> np.ndarray:
    """Pad a photo (white) or label map (0) to the aspect ratio of `size_hw` (height, width), centred, then resize.

    Photos are resized with a box filter (area average), label maps with nearest neighbour.
    """
    height, width = size_hw
    w, h = image.size
    target = width / height
    if abs(w / h - target) > 1e-3:
        new_w, new_h = (round(h * target), h) if w / h < target else (w, round(w / target))
        fill: Any = 0 if labels else BACKGROUND_RGB
        padded = Image.new(image.mode, (new_w, new_h), fill)
        padded.paste(image, ((new_w - w) // 2, (new_h - h) // 2))
        image = padded
    resample = Image.Resampling.NEAREST if labels else Image.Resampling.BOX
    return np.asarray(image.resize((width, height), resample))


def _open(path: Path, layout: str) -> Image.Image:
    if not path.is_file():
        raise RealDatasetError(f"{path} is missing; expected layout: {layout}")
    try:
        image = Image.open(path)
        image.load()
    except OSError as error:
        raise RealDatasetError(f"{path} is not a readable image ({error}); expected layout: {layout}") from None
    return image


def _require_dir(path: Path, layout: str) -> None:
    if not path.is_dir():
        raise RealDatasetError(f"{path} is not a folder; expected layout: {layout}")


def read_pairs(path: Path, layout: str) -> list[tuple[str, str]]:
    """A pair list: one "person_image garment_image" per line (blank lines ignored)."""
    if not path.is_file():
        raise RealDatasetError(f"pair list {path} is missing; expected layout: {layout}")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise RealDatasetError(f"{path} line {number} has {len(fields)} fields; need 'person_image garment_image'")
        pairs.append((fields[0], fields[1]))
    return pairs


class RealDataset(Sequence, ABC):
    """Base: a list of items, each turned into a sample of `size_hw` (height, width) px by `_load`."""

    name = "real"

    def __init__(self, items: list[Any], pose_fn: PoseFn | None, size_hw: tuple[int, int]) -> None:
        self._items = items
        self.pose_fn = pose_fn
        self.size_hw = size_hw

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> dict:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} is out of range; {self.name} has {len(self)} samples")
        return self._load(self._items[i])

    @abstractmethod
    def _load(self, item: Any) -> dict:
        """One item of the list -> its sample dict."""

    def _photo(self, sample: dict, key: str, path: Path, layout: str, pose_key: str | None) -> None:
        """Fill `key` with the fitted photo and `pose_key` with its pose map (if a pose_fn is set)."""
        photo = _open(path, layout).convert("RGB")
        sample[key] = fit_to_canvas(photo, self.size_hw)
        if self.pose_fn is not None and pose_key is not None:
            sample[pose_key] = self.pose_fn(np.asarray(photo))

    def _labels(self, path: Path, table: np.ndarray, layout: str) -> np.ndarray | None:
        if not path.is_file():
            return None
        parsing = _open(path, layout)
        classes = np.asarray(parsing if parsing.mode in ("L", "P") else parsing.convert("L"))
        if classes.max() >= len(table):
            raise RealDatasetError(f"{path} has class {classes.max()}; this dataset's parsing has {len(table)} classes")
        return fit_to_canvas(Image.fromarray(table[classes]), self.size_hw, labels=True)


class VitonHD(RealDataset):
    """VITON-HD: `split` train or test; `pairs` "paired" (try-off) or "unpaired" (evaluation only)."""

    name = "VITON-HD"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        pairs: str = "paired",
        pose_fn: PoseFn | None = None,
        *,
        size_hw: tuple[int, int],
    ) -> None:
        if split not in ("train", "test") or pairs not in ("paired", "unpaired"):
            raise RealDatasetError(f"VITON-HD split {split!r} / pairs {pairs!r}; use train|test and paired|unpaired")
        self.root = Path(root)
        _require_dir(self.root, VITON_HD_LAYOUT)
        self.folder = self.root / split
        for sub in ("image", "cloth"):
            _require_dir(self.folder / sub, VITON_HD_LAYOUT)
        listed = read_pairs(self.root / f"{split}_pairs.txt", VITON_HD_LAYOUT)
        # The official lists pair each person with another garment; paired mode uses the person's own.
        items = [(person, person if pairs == "paired" else cloth) for person, cloth in listed]
        self.pairs = pairs
        super().__init__(items, pose_fn, size_hw)

    def _load(self, item: tuple[str, str]) -> dict:
        person, cloth = item
        sample: dict = {"meta": {"dataset": self.name, "person": person, "garment": cloth, "pairs": self.pairs}}
        self._photo(sample, "reference", self.folder / "image" / person, VITON_HD_LAYOUT, "pose_ref")
        garment = fit_to_canvas(_open(self.folder / "cloth" / cloth, VITON_HD_LAYOUT).convert("RGB"), self.size_hw)
        labels = self._labels(
            self.folder / "image-parse-v3" / (Path(person).stem + ".png"), VITON_HD_LABELS, VITON_HD_LAYOUT
        )
        if labels is not None:
            sample["labels_reference"] = labels
        if self.pairs == "paired":
            sample["upper_a"], sample["tasks"] = garment, ["try_off_upper"]
        else:
            sample["upper_b"], sample["tasks"] = garment, []
            sample["meta"]["unpaired_tasks"] = ["try_on_upper"]
        return sample


class DressCode(RealDataset):
    """DressCode: categories upper_body / lower_body / dresses; `split` train or test."""

    name = "DressCode"
    CATEGORIES = ("upper_body", "lower_body", "dresses")

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        pairs: str = "paired",
        categories: Sequence[str] = CATEGORIES,
        pose_fn: PoseFn | None = None,
        *,
        size_hw: tuple[int, int],
    ) -> None:
        if split not in ("train", "test") or pairs not in ("paired", "unpaired"):
            raise RealDatasetError(f"DressCode split {split!r} / pairs {pairs!r}; use train|test and paired|unpaired")
        if split == "train" and pairs == "unpaired":
            raise RealDatasetError("DressCode has unpaired lists for the test split only; use pairs='paired' for train")
        self.root = Path(root)
        _require_dir(self.root, DRESSCODE_LAYOUT)
        list_name = "train_pairs.txt" if split == "train" else f"test_pairs_{pairs}.txt"
        items = []
        for category in categories:
            if category not in self.CATEGORIES:
                raise RealDatasetError(f"DressCode category {category!r} is unknown; use {', '.join(self.CATEGORIES)}")
            _require_dir(self.root / category / "images", DRESSCODE_LAYOUT)
            items += [(category, p, c) for p, c in read_pairs(self.root / category / list_name, DRESSCODE_LAYOUT)]
        self.pairs = pairs
        super().__init__(items, pose_fn, size_hw)

    def _load(self, item: tuple[str, str, str]) -> dict:
        category, person, cloth = item
        folder = self.root / category
        slot = "lower" if category == "lower_body" else "upper"
        sample: dict = {
            "meta": {
                "dataset": self.name,
                "category": category,
                "person": person,
                "garment": cloth,
                "dress": category == "dresses",
                "pairs": self.pairs,
            }
        }
        self._photo(sample, "reference", folder / "images" / person, DRESSCODE_LAYOUT, "pose_ref")
        garment = fit_to_canvas(_open(folder / "images" / cloth, DRESSCODE_LAYOUT).convert("RGB"), self.size_hw)
        label_name = re.sub(r"_0$", "_4", Path(person).stem) + ".png"
        labels = self._labels(folder / "label_maps" / label_name, DRESSCODE_LABELS, DRESSCODE_LAYOUT)
        if labels is not None:
            sample["labels_reference"] = labels
        if self.pairs == "paired":
            sample[f"{slot}_a"], sample["tasks"] = garment, [f"try_off_{slot}"]
        else:
            sample[f"{slot}_b"], sample["tasks"] = garment, []
            sample["meta"]["unpaired_tasks"] = [f"try_on_{slot}"]
        return sample


_DEEPFASHION_NAME = re.compile(r"^(?P<outfit>.+-id_\d+-\d+)_(?P<view>\d+_[a-z]+)$")


class DeepFashionMultiModal(RealDataset):
    """DeepFashion-MultiModal: every ordered pair of views of one person in one outfit.

    `split`: "all", or "train" / "test" (90% / 10% of outfits, by a hash of the outfit id).
    """

    name = "DeepFashion-MultiModal"

    def __init__(
        self, root: str | Path, split: str = "all", pose_fn: PoseFn | None = None, *, size_hw: tuple[int, int]
    ) -> None:
        if split not in ("all", "train", "test"):
            raise RealDatasetError(f"DeepFashion-MultiModal split {split!r}; use all, train or test")
        self.root = Path(root)
        _require_dir(self.root / "images", DEEPFASHION_MM_LAYOUT)
        outfits: dict[str, list[str]] = {}
        for path in sorted((self.root / "images").glob("*.jpg")):
            match = _DEEPFASHION_NAME.match(path.stem)
            if match is None:
                raise RealDatasetError(f"{path} does not follow the naming; expected layout: {DEEPFASHION_MM_LAYOUT}")
            outfits.setdefault(match["outfit"], []).append(path.stem)
        if not outfits:
            raise RealDatasetError(
                f"{self.root / 'images'} holds no .jpg images; expected layout: {DEEPFASHION_MM_LAYOUT}"
            )
        items = []
        for outfit, views in outfits.items():
            in_test = int(hashlib.sha1(outfit.encode()).hexdigest(), 16) % 10 == 0
            if split == "all" or (split == "test") == in_test:
                items += [(outfit, a, b) for a in views for b in views if a != b]
        super().__init__(items, pose_fn, size_hw)

    def _load(self, item: tuple[str, str, str]) -> dict:
        outfit, ref, target = item
        sample: dict = {
            "meta": {"dataset": self.name, "outfit": outfit, "reference": ref, "person": target},
            "tasks": ["multiview"],
        }
        self._photo(sample, "reference", self.root / "images" / f"{ref}.jpg", DEEPFASHION_MM_LAYOUT, "pose_ref")
        self._photo(sample, "person_same", self.root / "images" / f"{target}.jpg", DEEPFASHION_MM_LAYOUT, "pose")
        for key, name in (("labels_reference", ref), ("labels_person_same", target)):
            labels = self._labels(self.root / "segm" / f"{name}_segm.png", DEEPFASHION_MM_LABELS, DEEPFASHION_MM_LAYOUT)
            if labels is not None:
                sample[key] = labels
        return sample


def estimator_pose_fn(size_hw: tuple[int, int], blank_without_person: bool = False) -> PoseFn:
    """A pose function: estimate the SMPL-X pose of the photo, render its part-colour pose map (yaw 0) at `size_hw`.

    The map shows the pose in the canvas framing, not the photo's: real photos
    are not framed like the fitting room's camera. It is rendered by the same
    function and low-poly body as the app's pose maps (`omfa.pose.condition`).
    `blank_without_person`: a photo in which the estimator finds no single
    person gets a blank map (what a sample without a pose function gives)
    instead of `PersonCountError`, so that one such photo does not stop a training run.
    """
    from omfa.pose.body import load_body
    from omfa.pose.condition import pose_condition
    from omfa.pose.estimate import PersonCountError, estimate_pose
    from omfa.pose.lowpoly import LowPolyBody
    from omfa.pose.render import PoseRenderer

    body, renderer = load_body(), PoseRenderer()
    mesh_body = LowPolyBody(body)

    def pose_map(photo: np.ndarray) -> np.ndarray:
        try:
            estimated = estimate_pose(photo, body=body)
        except PersonCountError:
            if not blank_without_person:
                raise
            return np.zeros((*size_hw, 3), np.uint8)
        return pose_condition(renderer, mesh_body.posed(estimated.pose), 0.0, size_hw, "parts")

    return pose_map


# `--dataset` name -> (loader, the split that trains); each loader fits images to the size it is given.
REAL_DATASETS: dict[str, type[RealDataset]] = {
    "viton-hd": VitonHD,
    "dresscode": DressCode,
    "deepfashion": DeepFashionMultiModal,
}


def training_split(name: str, root: str | Path, size_hw: tuple[int, int], pose_fn: PoseFn | None = None) -> RealDataset:
    """The training samples of real dataset `name` (a key of `REAL_DATASETS`) at `size_hw` (height, width)."""
    if name not in REAL_DATASETS:
        raise RealDatasetError(f"unknown real dataset {name!r}; choose one of {', '.join(REAL_DATASETS)}")
    # VITON-HD and DressCode train on their paired train lists (try-off); DeepFashion on the
    # outfits its hash split keeps for training (multi-view)
    return REAL_DATASETS[name](root, "train", pose_fn=pose_fn, size_hw=size_hw)
