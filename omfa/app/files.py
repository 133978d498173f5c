"""What the app hands the browser: images at the model's own size, in files that are never rewritten.

The studio (`omfa.studio`) makes every image at the model's canvas size
(128x96 for the shipped checkpoint): what the model sees and what the
command line writes. They travel to the browser at that size, and the page
shows them large (`CANVAS_CSS`): enlarging and encoding every
streamed step on the server cost 7x more than a canvas-size PNG, with 4.6x
the bytes. Only the Pose Studio's shaded figure is rendered large, at
`FIGURE_HW` (a click on it is a pixel of that size).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import io
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

FIGURE_HW = (384, 288)  # the Pose Studio's shaded figure, as large as the page shows the pose map
# The class of every widget showing canvas images: the page enlarges them to fill their box,
# keeping the aspect ratio (a rule of the app's stylesheet, `omfa.app.blocks.CSS`).
CANVAS_CLASS = "omfa-canvas"
CANVAS_CSS = f".{CANVAS_CLASS} img {{ width: 100%; height: 100%; object-fit: contain; }}"


def release_freed_memory() -> None:
    """Hand the heap memory a finished run freed back to the system (glibc's `malloc_trim`).

    A run's activations are large, short-lived blocks (a pose gallery samples four views at
    once); glibc keeps freed blocks in its arenas, so without this the server's resident memory
    stays at its peak after a maximal run. Elsewhere (no glibc) it does nothing.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, loaded once; None where it is not glibc."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


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

    def write(self, data: bytes, name: str | None = None) -> str:
        """Store `data` (unless already there) and return its path; a `name` (without the suffix) is
        the file's name as a browser downloads it, in a folder named by the content."""
        digest = hashlib.blake2b(data, digest_size=12).hexdigest()
        path = self.folder / f"{digest}{self.suffix}" if name is None else self.folder / digest / f"{name}{self.suffix}"
        with self._lock:
            if path not in self._order:
                path.parent.mkdir(exist_ok=True)
                temporary = path.with_name(path.name + ".part")
                temporary.write_bytes(data)
                temporary.replace(path)  # atomic: a reader sees the whole file or none
            self._order[path] = None
            self._order.move_to_end(path)
            while len(self._order) > self.keep:
                old, _ = self._order.popitem(last=False)
                old.unlink(missing_ok=True)
                if old.parent != self.folder and not any(old.parent.iterdir()):
                    old.parent.rmdir()
        return str(path)

    def png(self, image: np.ndarray) -> str:
        """Store an (H, W, 3) uint8 image as PNG and return its path."""
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        return self.write(buffer.getvalue())


class AppFiles:
    """The app's stores, shared by every session: streamed images, the Pose Studio's 3-D views and
    the pose galleries' zips."""

    def __init__(self) -> None:
        self.images = FileStore(".png")
        self.models = FileStore(".glb", keep=32)
        self.archives = FileStore(".zip", keep=16)
