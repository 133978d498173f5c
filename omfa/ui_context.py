"""What every session of the app shares: the pipeline, the body, the renderer, prepared inputs.

One `AppContext` serves all sessions of a process. It holds no per-user
state: what a user edits (the Pose Studio's pose) travels in a `gr.State`,
and the caches below are keyed by the content of an upload, never by who
sent it, so two users uploading the same photo share its preparation.

Threads: Gradio calls handlers from a pool of worker threads. EGL binds an
OpenGL context to the thread that made it current and pyrender never
releases it, so a renderer created on one thread fails with EGL_BAD_ACCESS
on another; `RenderWorker` therefore runs every render on one thread of its
own. The body, MediaPipe and u2netp serialise their calls with locks.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from omfa.canvas import CANVAS_HW
from omfa.data.lowpoly import LowPolyBody
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
from omfa.pipeline import OMFAPipeline
from omfa.pose.body import Body, Pose, PosedMesh, load_body
from omfa.pose.estimate import estimate_pose
from omfa.pose.presets import PosePreset, PresetError, load_presets
from omfa.pose.render import PoseRenderer
from omfa.ui_sampling import RunSettings, Stage, StageStep, sample_stages

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
DISPLAY_SCALE = 3  # slot images (128x96) are shown at 384x288
FIGURE_HW = (CANVAS_HW[0] * DISPLAY_SCALE, CANVAS_HW[1] * DISPLAY_SCALE)  # Pose Studio figure
THUMBNAIL_HW = (160, 120)  # preset gallery


@dataclass(frozen=True, eq=False)
class PoseState:
    """The pose being edited in the Pose Studio (one per session, kept in a gr.State).

    yaw_deg: the view around the body (0 faces the camera, 90 shows its left side).
    """

    pose: Pose
    yaw_deg: float = 0.0
    name: str = ""


def display(image: np.ndarray | Image.Image, scale: int = DISPLAY_SCALE) -> np.ndarray:
    """A canvas image (H, W, 3) uint8 enlarged `scale` times for the screen: (H*s, W*s, 3)."""
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return np.asarray(image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS))


def sentence(error: BaseException) -> str:
    """An error message as a sentence for the screen: first letter upper case."""
    text = str(error).strip() or type(error).__name__
    return text[0].upper() + text[1:]


class RenderWorker:
    """A `PoseRenderer` that lives on, and only ever runs on, one thread of its own."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omfa-gl")
        self._renderer: PoseRenderer = self._executor.submit(PoseRenderer).result()

    def pose_map(self, mesh: PosedMesh, yaw_deg: float, size_hw: tuple[int, int] = CANVAS_HW) -> np.ndarray:
        """`PoseRenderer.pose_map` on the render thread: (H, W, 3) uint8 on black."""
        return self._executor.submit(self._renderer.pose_map, mesh, yaw_deg, size_hw).result()

    def thumbnail(self, mesh: PosedMesh, yaw_deg: float, size_hw: tuple[int, int]) -> np.ndarray:
        """`PoseRenderer.thumbnail` on the render thread: (H, W, 3) uint8 on light grey."""
        return self._executor.submit(self._renderer.thumbnail, mesh, yaw_deg, size_hw).result()

    def close(self) -> None:
        """Free the OpenGL context and stop the thread."""
        self._executor.submit(self._renderer.close).result()
        self._executor.shutdown()


class FileStore:
    """Content-addressed files in a private temporary folder, for outputs handed to Gradio by path.

    Gradio saves an array output to a file named by its content and rewrites
    that file whenever the same content is yielded again, while a browser may
    be reading it (a truncated image). A file here is never rewritten: the
    same content gets the same path, which Gradio then copies into its cache
    once. Only the newest `keep` files stay.
    """

    def __init__(self, suffix: str, keep: int = 256) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="omfa-files-"))
        weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)  # removed with the store, or at exit
        self.suffix = suffix
        self.keep = keep
        self._order: OrderedDict[Path, None] = OrderedDict()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> str:
        """Store `data` (unless already there) and return its path."""
        path = self.folder / f"{hashlib.blake2b(data, digest_size=12).hexdigest()}{self.suffix}"
        with self._lock:
            if path not in self._order:
                temporary = path.with_name(path.name + ".part")
                temporary.write_bytes(data)
                temporary.replace(path)  # atomic: a reader sees the whole file or none
            self._order[path] = None
            self._order.move_to_end(path)
            while len(self._order) > self.keep:
                old, _ = self._order.popitem(last=False)
                old.unlink(missing_ok=True)
        return str(path)

    def png(self, image: np.ndarray) -> str:
        """Store an (H, W, 3) uint8 image as PNG and return its path."""
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        return self.write(buffer.getvalue())


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


class AppContext:
    """The resources of the app, created once per process and shared by every session.

    Args:
        pipe: the loaded pipeline; its canvas must be `CANVAS_HW` (what the preprocessing produces).
        gpu: a decorator for the sampling (`spaces.GPU` on a ZeroGPU Space); None samples in place.
        cache_size: prepared uploads kept for each kind (portraits, garments, estimated poses).
    """

    def __init__(self, pipe: OMFAPipeline, *, gpu: Callable[[Callable], Callable] | None = None,
                 body: Body | None = None, mediapipe: MediapipeModels | None = None, cache_size: int = 32) -> None:  # fmt: skip
        if tuple(pipe.canvas_hw) != CANVAS_HW:
            raise ValueError(f"the model's canvas is {pipe.canvas_hw[1]}x{pipe.canvas_hw[0]} px but the app prepares "
                             f"{CANVAS_HW[1]}x{CANVAS_HW[0]} px images; load a checkpoint trained at that size")  # fmt: skip
        self.pipe = pipe

        def sample(stages: Sequence[Stage], settings: RunSettings) -> Iterator[StageStep]:
            yield from sample_stages(pipe, stages, settings)

        # Decorated once here: the pipeline travels as a closure, not as an argument to pickle.
        self.sample: Callable[[Sequence[Stage], RunSettings], Iterator[StageStep]] = gpu(sample) if gpu else sample
        self.presets: dict[str, PosePreset] = load_presets()
        self.body = body if body is not None else load_body()
        # The training data's pose maps come from this decimated mesh (omfa.data.fitting_room):
        # rendering from it gives the model exactly the conditions it learned from.
        self.mesh_body = LowPolyBody(self.body)
        self.mediapipe = mediapipe if mediapipe is not None else default_models()
        self.u2netp = U2NetP()
        self.renderer = RenderWorker()
        self.images = FileStore(".png")  # streamed outputs
        self.models = FileStore(".glb", keep=32)  # the Pose Studio's 3-D views
        self._cache = _ContentCache(cache_size * 3)  # the three kinds share one LRU
        self.thumbnails: dict[str, np.ndarray] = {
            name: self.renderer.thumbnail(self.mesh_body.posed(preset.pose), preset.yaw_deg, THUMBNAIL_HW)
            for name, preset in self.presets.items()
        }

    def close(self) -> None:
        """Free the OpenGL context."""
        self.renderer.close()

    def warm_up(self) -> None:
        """Prepare the first example's portrait and garment now, so that the first user does not wait
        for MediaPipe and u2netp to load (about 5 s on a CPU) and the example's preparation is cached."""
        self.portrait(str(EXAMPLES_DIR / "portrait.png"))
        self.garment(str(EXAMPLES_DIR / "top.png"))

    # -- uploads ----------------------------------------------------------------

    def portrait(self, source: Any) -> PreparedPortrait:
        """The portrait on the canvas (the `reference` slot). Raises ImageInputError for the user."""
        if source is None:
            raise ImageInputError("no portrait given; upload a photo of one person, head to at least the chest")
        return self._cache.get_or_make(content_key("portrait", source), lambda: prepare_portrait(
            source, mediapipe=self.mediapipe, u2netp=self.u2netp))  # fmt: skip

    def garment(self, source: Any, what: str = "garment") -> PreparedGarment:
        """A flat garment or a dressed person, told apart. Raises ImageInputError for the user."""
        if source is None:
            raise ImageInputError(f"no {what} photo given; upload a garment laid flat or a person wearing it")
        return self._cache.get_or_make(content_key("garment", source), lambda: prepare_garment(
            source, mediapipe=self.mediapipe, u2netp=self.u2netp))  # fmt: skip

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
        """The model's pose condition for `pose` seen from `yaw_deg`: (H, W, 3) uint8, CANVAS_HW."""
        return self.renderer.pose_map(self.mesh_body.posed(pose), float(yaw_deg), CANVAS_HW)

    def figure(self, pose: Pose, yaw_deg: float) -> np.ndarray:
        """A shaded figure of the pose for the Pose Studio: (H, W, 3) uint8, FIGURE_HW."""
        return self.renderer.thumbnail(self.mesh_body.posed(pose), float(yaw_deg), FIGURE_HW)
