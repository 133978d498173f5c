"""What every run of the studio shares: the pipeline, the body, the renderer, prepared inputs.

One `StudioContext` serves all sessions of the app's process (or the one run
of an `omfa tryon` command). It holds no per-user state: what a user edits
(the Pose Studio's pose, `omfa.studio.runs.PoseState`) travels with the
user's request, and the caches below are keyed by the content of an upload,
never by who sent it, so two users uploading the same photo share its
preparation. Every image it makes is at the model's canvas size
(`pipe.canvas_hw`); enlarging for a screen is the app's business
(`omfa.app.files.display`).

Threads: Gradio calls handlers from a pool of worker threads. EGL binds an
OpenGL context to the thread that made it current and pyrender never
releases it, so a renderer created on one thread fails with EGL_BAD_ACCESS
on another; `RenderWorker` therefore runs every render on one thread of its
own. The body, MediaPipe and u2netp serialise their calls with locks.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from omfa.imaging import (
    ImageInputError,
    PreparedGarment,
    PreparedPortrait,
    U2NetP,
    load_image,
    prepare_garment,
    prepare_portrait,
)
from omfa.mediapipe_models import MediapipeModels, default_models
from omfa.pipeline import OMFAPipeline, Preview, Stage
from omfa.pose.body import Body, Pose, PosedMesh, load_body
from omfa.pose.condition import check_kind, pose_condition
from omfa.pose.estimate import estimate_pose
from omfa.pose.lowpoly import LowPolyBody
from omfa.pose.presets import PosePreset, PresetError, load_presets
from omfa.pose.render import PoseRenderer
from omfa.studio.card import ModelCard
from omfa.studio.settings import RunSettings, sample_stages

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "examples"
THUMBNAIL_HW = (160, 120)  # preset gallery


class RenderWorker:
    """A `PoseRenderer` that lives on, and only ever runs on, one thread of its own."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omfa-gl")
        self._renderer: PoseRenderer = self._executor.submit(PoseRenderer).result()

    def pose_condition(self, mesh: PosedMesh, yaw_deg: float, size_hw: Sequence[int], kind: str) -> np.ndarray:
        """`omfa.pose.condition.pose_condition` on the render thread: (H, W, 3) uint8 on black."""
        return self._executor.submit(pose_condition, self._renderer, mesh, yaw_deg, size_hw, kind).result()

    def thumbnail(self, mesh: PosedMesh, yaw_deg: float, size_hw: Sequence[int]) -> np.ndarray:
        """`PoseRenderer.thumbnail` on the render thread: (H, W, 3) uint8 on light grey."""
        return self._executor.submit(self._renderer.thumbnail, mesh, yaw_deg, size_hw).result()

    def close(self) -> None:
        """Free the OpenGL context and stop the thread."""
        self._executor.submit(self._renderer.close).result()
        self._executor.shutdown()


class _ContentCache:
    """A small thread-safe LRU from content keys to prepared inputs."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable | None, make: Callable[[], Any]) -> Any:
        if key is None:  # content that cannot be hashed cheaply: no caching
            return make()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: preparing takes up to a second
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


def content_key(kind: str, source: Any) -> tuple[str, str] | None:
    """(kind, digest of the upload's bytes) for a file path or an array; None otherwise."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            return None  # load_image reports the missing file
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    elif isinstance(source, np.ndarray):
        digest.update(f"{source.dtype}{source.shape}".encode())
        digest.update(np.ascontiguousarray(source).tobytes())
    else:
        return None
    return kind, digest.hexdigest()


class StudioContext:
    """The resources of the studio, created once per process and shared by every session.

    Args:
        pipe: the loaded pipeline; its canvas size (`pipe.canvas_hw`) is the size of every
            prepared upload and pose map, and its `transformer.config.pose_condition` the kind
            of pose map rendered.
        gpu: a decorator for the sampling (`spaces.GPU` on a ZeroGPU Space); None samples in place.
        body, mediapipe: the SMPL-X body and the MediaPipe models (default: the shipped ones).
        card: the checkpoint's model card; what it says the model was trained on decides which
            uploads get a notice that they are outside it (None: no claim, no such notice).
        cache_size: prepared uploads kept for each kind (portraits, garments, estimated poses).
        pose_map_cache_size: rendered pose maps kept (about 37 KB each at 128x96).
    """

    def __init__(
        self,
        pipe: OMFAPipeline,
        *,
        gpu: Callable[[Callable], Callable] | None = None,
        body: Body | None = None,
        mediapipe: MediapipeModels | None = None,
        card: ModelCard | None = None,
        cache_size: int = 32,
        pose_map_cache_size: int = 128,
    ) -> None:
        self.pipe = pipe
        self.card = card
        self.canvas_hw: tuple[int, int] = tuple(pipe.canvas_hw)
        self.pose_kind = check_kind(pipe.transformer.config.pose_condition)

        def sample(stages: Sequence[Stage], settings: RunSettings) -> Iterator[Preview]:
            yield from sample_stages(pipe, stages, settings)

        # Decorated once here: the pipeline travels as a closure, not as an argument to pickle.
        self.sample: Callable[[Sequence[Stage], RunSettings], Iterator[Preview]] = gpu(sample) if gpu else sample
        self.presets: dict[str, PosePreset] = load_presets()
        self.body = body if body is not None else load_body()
        # The training data's pose maps come from this decimated mesh (omfa.pose.lowpoly):
        # rendering from it gives the model exactly the conditions it learned from.
        self.mesh_body = LowPolyBody(self.body)
        self.mediapipe = mediapipe if mediapipe is not None else default_models()
        self.u2netp = U2NetP()
        self.renderer = RenderWorker()
        self._cache = _ContentCache(cache_size * 3)  # the three kinds share one LRU
        # Posing and rendering a map takes 60 to 90 ms on a CPU, a fifth of a warm try-on and all of
        # it before the first preview; presets and gallery turns repeat across requests.
        self._pose_maps = _ContentCache(pose_map_cache_size)
        self._thumbnails: dict[str, np.ndarray] = {}  # rendered on first use: a command line run needs none

    def close(self) -> None:
        """Free the OpenGL context."""
        self.renderer.close()

    def warm_up(self) -> None:
        """Prepare the first example's portrait and garment now, so that the first user does not wait
        for MediaPipe and u2netp to load (about 5 s on a CPU) and the example's preparation is cached."""
        self.portrait(str(EXAMPLES_DIR / "portrait.png"))
        self.garment(str(EXAMPLES_DIR / "top.png"))

    # -- uploads ----------------------------------------------------------------

    def portrait(self, source: Any, what: str = "portrait") -> PreparedPortrait:
        """The person of a photo on the canvas (the `reference` slot); `what` names the upload in
        messages. Raises ImageInputError for the user."""
        if source is None:
            raise ImageInputError(f"no {what} given; upload a photo of one person, head to at least the chest")
        key = content_key("portrait", source)
        return self._cache.get_or_make(
            None if key is None else (*key, what),  # the messages name the upload
            lambda: prepare_portrait(
                source, size_hw=self.canvas_hw, mediapipe=self.mediapipe, u2netp=self.u2netp, what=what
            ),
        )

    def garment(self, source: Any, what: str = "garment") -> PreparedGarment:
        """A flat garment or a dressed person, told apart. Raises ImageInputError for the user."""
        if source is None:
            raise ImageInputError(f"no {what} photo given; upload a garment laid flat or a person wearing it")
        return self._cache.get_or_make(
            content_key("garment", source),
            lambda: prepare_garment(source, size_hw=self.canvas_hw, mediapipe=self.mediapipe, u2netp=self.u2netp),
        )

    def photo_pose(self, source: Any) -> Pose:
        """The body pose of the one person in a photo (camera view: yaw 0 reproduces it)."""
        if source is None:
            raise ImageInputError("no photo given; upload a photo of one person to copy their pose")

        def estimate() -> Pose:
            rgb = np.asarray(load_image(source))
            return estimate_pose(rgb, body=self.body, models=self.mediapipe).pose

        return self._cache.get_or_make(content_key("pose", source), estimate)

    # -- poses ------------------------------------------------------------------

    def preset(self, name: str) -> PosePreset:
        """A preset by name, with an error that lists the valid ones."""
        if name not in self.presets:
            raise PresetError(f"unknown pose preset {name!r}; choose one of {', '.join(self.presets)}")
        return self.presets[name]

    def pose_map(self, pose: Pose, yaw_deg: float) -> np.ndarray:
        """The model's pose condition for `pose` seen from `yaw_deg`: (H, W, 3) uint8, H x W = `canvas_hw`,
        of the kind the model was trained with (`pose_kind`). Read-only: a map is shared by every
        request for the same pose and view."""
        key = (pose.global_orient.tobytes(), pose.body_pose.tobytes(), float(yaw_deg))

        def render() -> np.ndarray:
            rendered = self.renderer.pose_condition(
                self.mesh_body.posed(pose), float(yaw_deg), self.canvas_hw, self.pose_kind
            )
            rendered.setflags(write=False)
            return rendered

        return self._pose_maps.get_or_make(key, render)

    def figure(self, pose: Pose, yaw_deg: float, size_hw: Sequence[int]) -> np.ndarray:
        """A shaded figure of the pose (the Pose Studio's): (H, W, 3) uint8, H x W = `size_hw`."""
        return self.renderer.thumbnail(self.mesh_body.posed(pose), float(yaw_deg), size_hw)

    def thumbnail(self, name: str) -> np.ndarray:
        """The shaded thumbnail of a preset at its own view, (H, W, 3) uint8 at THUMBNAIL_HW; rendered once."""
        if name not in self._thumbnails:
            preset = self.preset(name)
            self._thumbnails[name] = self.renderer.thumbnail(
                self.mesh_body.posed(preset.pose), preset.yaw_deg, THUMBNAIL_HW
            )
        return self._thumbnails[name]
