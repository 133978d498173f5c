"""MediaPipe wrapper on a real photo (scikit-image's astronaut, 512x512, one person)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from skimage import data

from omfa.mediapipe_models import (
    POSE_LANDMARK_NAMES,
    ImageArrayError,
    MediapipeModels,
    default_models,
)

L = POSE_LANDMARK_NAMES.index


@pytest.fixture(scope="module")
def models() -> MediapipeModels:
    return MediapipeModels()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # (512, 512, 3) uint8, a woman facing the camera


def test_pose_landmarks_on_astronaut(models, astronaut):
    pose = models.pose(astronaut)
    assert pose is not None
    assert pose.image_xy.shape == (33, 2) and pose.world_xyz.shape == (33, 3)
    assert pose.visibility.shape == (33,) and pose.image_z.shape == (33,)
    # She faces the camera: her left shoulder is on the image's right.
    assert pose.image_xy[L("left_shoulder"), 0] > pose.image_xy[L("right_shoulder"), 0] + 0.2
    assert pose.visibility[L("nose")] > 0.9
    # Nose at about (0.435, 0.25) of the image (measured, 0.02 tolerance).
    np.testing.assert_allclose(pose.image_xy[L("nose")], [0.435, 0.25], atol=0.02)
    # World landmarks are metres: an adult shoulder width is 0.25-0.45 m, the
    # nose about 0.6 m above the hip centre (y points down).
    shoulders = np.linalg.norm(pose.world_xyz[L("left_shoulder")] - pose.world_xyz[L("right_shoulder")])
    assert 0.25 < shoulders < 0.45
    assert -0.75 < pose.world_xyz[L("nose"), 1] < -0.45
    px = pose.pixel_xy(512, 512)
    np.testing.assert_allclose(px, pose.image_xy * 512, rtol=1e-6)


def test_face_box_contains_nose(models, astronaut):
    faces = models.faces(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8 and face.keypoints.shape == (6, 2)
    np.testing.assert_allclose(face.box, [0.339, 0.132, 0.203, 0.203], atol=0.03)
    nose = models.pose(astronaut).image_xy[L("nose")]
    x0, y0, w, h = face.box
    assert x0 < nose[0] < x0 + w and y0 < nose[1] < y0 + h


def test_selfie_mask_separates_person(models, astronaut):
    mask = models.selfie_mask(astronaut)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert mask[100, 220] > 0.9  # her face
    assert mask[10, 10] < 0.1  # the flag/background in the top-left corner
    assert 0.4 < (mask > 0.5).mean() < 0.7


def test_people_count_two_and_zero(models, astronaut):
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # (512, 1024, 3)
    people = models.people(two)
    assert people.pose is not None  # the pose model still returns only one person
    assert len(people.faces) == 2 and people.count == 2
    blank = np.full((256, 256, 3), 255, np.uint8)
    nobody = models.people(blank)
    assert nobody.pose is None and nobody.faces == () and nobody.count == 0


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((64, 64, 3), np.float32), "dtype is float32"),
        (np.zeros((64, 64), np.uint8), "shape is (64, 64)"),
        (np.zeros((64, 64, 4), np.uint8), "shape is (64, 64, 4)"),
        (np.zeros((4, 64, 3), np.uint8), "64x4 px"),
        ([[0, 0, 0]], "is a list"),
    ],
)
def test_bad_arrays_are_rejected(models, bad, words):
    with pytest.raises(ImageArrayError, match=words.replace("(", r"\(").replace(")", r"\)")):
        models.pose(bad)


def test_concurrent_calls_match_serial(models, astronaut):
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    images = [astronaut, flipped] * 3
    serial = [models.pose(im).image_xy for im in images]
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(pool.map(lambda im: models.pose(im).image_xy, images))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_default_instance_is_shared():
    assert default_models() is default_models()
