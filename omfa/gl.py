"""The one place that imports pyrender, configured for headless rendering.

pyrender picks its OpenGL platform when it is first imported and reads
``np.infty``, which numpy 2 removed. Both must be fixed before the import, so
every module gets pyrender from here::

    from omfa.gl import pyrender

EGL renders without a display: on machines without a GPU it runs on Mesa's
llvmpipe, on NVIDIA machines on the GPU's EGL driver. A user who already set
``PYOPENGL_PLATFORM`` (for example to ``osmesa``) keeps their choice.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
if not hasattr(np, "infty"):
    # pyrender 0.1.45 still reads np.infty (an alias removed in numpy 2.0).
    np.infty = np.inf

import pyrender  # noqa: E402  (must follow the two settings above)

__all__ = ["pyrender"]
