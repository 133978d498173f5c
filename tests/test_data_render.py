"""Rendered synthetic samples: format, alignment, pattern agreement and garment coverage (OpenGL)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, uniform_filter

from omfa.data.examples import LABELS
from omfa.data.fitting_room import FittingRoom
from omfa.data.garments import GarmentSpec, Pattern
from omfa.data.people import Identity
from omfa.data.shards import SAMPLE_IMAGES, SAMPLE_LABELS, SAMPLE_MASKS
from omfa.data.synthetic import SynthConfig, perturbed_pose, sample_spec, split_presets

CONFIG = SynthConfig(seed=1, counts={"train": 60, "val": 8, "test": 16})
SIZE_HW = CONFIG.size_hw  # the default 128x96
PERSON = Identity("p", (205, 150, 110), (40, 30, 25), "short", "low", (20, 20, 20), 0.05, (0.0,) * 10)
STRIPED_TOP = GarmentSpec(
    "t1", "upper", "long_sleeve", Pattern("stripes", (200, 30, 30), (245, 245, 245), 0.12, 0.5), hem=0.6, sleeve=0.9
)
BLUE_TOP = GarmentSpec("t2", "upper", "short_sleeve", Pattern("solid", (30, 60, 190)), hem=0.6, sleeve=0.3)
GREEN_TROUSERS = GarmentSpec(
    "b1", "lower", "trousers", Pattern("checks", (40, 140, 60), (230, 230, 120), 0.12, 0.4), hem=0.95
)


@pytest.fixture(scope="module")
def room():
    room = FittingRoom(size_hw=SIZE_HW)
    yield room
    room.close()


@pytest.fixture(scope="module")
def samples(room):
    partition = split_presets(list(room.presets), CONFIG.seed)
    return [room.render(sample_spec(CONFIG, "train", i, room.presets, partition)) for i in (0, 20, 40)]


def chroma_histogram(pixels: np.ndarray, bins: int = 8) -> np.ndarray:
    """Normalised colour histogram of pixels divided by their brightest channel.

    Dividing by the peak channel cancels most of the shading (pyrender lights in
    linear space and encodes with a power law, which keeps channel ratios); a
    3-bin box blur makes neighbouring bins overlap, so a colour near a bin edge
    still matches itself. Near-black pixels get their own bin.
    """
    pixels = pixels.astype(np.float64)
    peak = pixels.max(axis=1, keepdims=True)
    dark = peak[:, 0] < 25
    cells = np.minimum(pixels / np.maximum(peak, 1.0) * bins, bins - 1).astype(int)
    histogram = np.zeros((bins, bins, bins))
    np.add.at(histogram, tuple(cells[~dark].T), 1.0)
    histogram = uniform_filter(histogram, size=3, mode="constant")
    out = np.append(histogram.ravel(), dark.sum())
    return out / out.sum()


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection (1 = same colour distribution, 0 = disjoint)."""
    return float(np.minimum(chroma_histogram(a), chroma_histogram(b)).sum())


def shop_pixels(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Garment pixels of a shop image, without the edge pixels blended with the background."""
    return image[binary_erosion(mask)]


def test_sample_has_every_slot_in_the_contract(samples):
    for sample in samples:
        for key in SAMPLE_IMAGES:
            assert sample[key].shape == (*SIZE_HW, 3) and sample[key].dtype == np.uint8, key
        for key in SAMPLE_LABELS:
            assert sample[key].shape == SIZE_HW and sample[key].dtype == np.uint8, key
            assert set(np.unique(sample[key])) <= set(LABELS.values())
        for key in SAMPLE_MASKS:
            assert sample[key].shape == SIZE_HW and sample[key].dtype == bool, key
        # White backgrounds, black pose-map backgrounds.
        for key in ("reference", "person", "person_same", "upper_a", "lower_b"):
            assert (sample[key][0, 0] == 255).all(), key
        assert (sample["pose"][0, 0] == 0).all() and (sample["pose_ref"][0, 0] == 0).all()
        meta = sample["meta"]
        replaced = meta["replaced"]
        assert np.array_equal(sample["upper_a"], sample["upper_b"]) == (replaced == "lower")
        assert np.array_equal(sample["lower_a"], sample["lower_b"]) == (replaced == "upper")


def test_labels_and_pose_map_line_up_with_the_person(samples):
    for sample in samples:
        for image, labels, pose in (("person", "labels_person", "pose"), ("reference", "labels_reference", "pose_ref")):
            body = sample[pose].any(axis=2)
            dressed = sample[labels] > 0
            # The bare body (pose map) lies inside the dressed silhouette, pixel for pixel.
            assert (dressed[body]).mean() > 0.995
            # Outside the labelled silhouette only anti-aliased edge pixels are not pure white.
            background = sample[image][~dressed]
            assert (background == 255).all(axis=1).mean() > 0.97


def test_worn_pattern_matches_the_shop_image(room):
    posed = room.posed(perturbed_pose(room.presets["a_pose"], 3), PERSON.shape)
    own, other = [], []
    for worn, wrong in ((STRIPED_TOP, BLUE_TOP), (BLUE_TOP, STRIPED_TOP)):
        image, labels = room.person_image(PERSON, (worn, GREEN_TROUSERS), posed, 10.0)
        garment = image[labels == LABELS["upper"]]
        shop, mask = room.shop_image(worn)
        shop_wrong, mask_wrong = room.shop_image(wrong)
        own.append(overlap(garment, shop_pixels(shop, mask)))
        other.append(overlap(garment, shop_pixels(shop_wrong, mask_wrong)))
        trousers = image[labels == LABELS["lower"]]
        shop_lower, mask_lower = room.shop_image(GREEN_TROUSERS)
        assert overlap(trousers, shop_pixels(shop_lower, mask_lower)) > 0.5
    assert min(own) > 0.6 and max(other) < 0.1


def test_generated_garments_match_their_shop_images(samples):
    own, crossed = [], []
    for sample in samples:
        for labels, image, outfit in (("labels_person", "person", "b"), ("labels_person_same", "person_same", "a")):
            for slot, other in (("upper", "lower"), ("lower", "upper")):
                worn = sample[image][sample[labels] == LABELS[slot]]
                if len(worn) < 30:  # hidden by the pose or the view
                    continue
                own.append(overlap(worn, shop_pixels(sample[f"{slot}_{outfit}"], sample[f"mask_{slot}_{outfit}"])))
                crossed.append(
                    overlap(worn, shop_pixels(sample[f"{other}_{outfit}"], sample[f"mask_{other}_{outfit}"]))
                )
    assert len(own) >= 6
    assert min(own) > 0.45 and np.mean(own) > np.mean(crossed) + 0.3


def test_garments_cover_plausible_fractions(room, samples):
    posed = room.posed(perturbed_pose(room.presets["a_pose"], 0), PERSON.shape)
    _, labels = room.person_image(PERSON, (STRIPED_TOP, GREEN_TROUSERS), posed, 0.0)
    person = labels > 0
    fractions = {
        name: (labels == LABELS[name]).sum() / person.sum() for name in ("upper", "lower", "skin", "hair", "shoes")
    }
    assert 0.25 < fractions["upper"] < 0.55 and 0.2 < fractions["lower"] < 0.5
    assert 0.04 < fractions["skin"] < 0.3 and fractions["hair"] > 0.005 and fractions["shoes"] > 0.005
    assert 700 < person.sum() < 3000  # a 1.7 m body in the 128x96 canvas
    for sample in samples:
        for key in ("mask_upper_a", "mask_lower_a"):
            assert 0.03 < sample[key].mean() < 0.6, key
        for labels_key in ("labels_reference", "labels_person"):
            dressed = sample[labels_key] > 0
            garments = np.isin(sample[labels_key], [LABELS["upper"], LABELS["lower"]])
            assert 0.25 < garments[dressed].mean() < 0.95


def test_same_spec_same_pixels(room, samples):
    partition = split_presets(list(room.presets), CONFIG.seed)
    again = room.render(sample_spec(CONFIG, "train", 20, room.presets, partition))
    for key in (*SAMPLE_IMAGES, *SAMPLE_LABELS, *SAMPLE_MASKS):
        assert np.array_equal(again[key], samples[1][key]), key
