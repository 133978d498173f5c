"""OMFA Studio: one diffusion model for virtual try-on, try-off and any-pose views."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Lazy exports: `import omfa` stays cheap for the CLI, and diffusers finds the
# custom components by `getattr(omfa, class_name)` when loading a checkpoint.
_EXPORTS = {
    "OMFATransformer": "omfa.denoiser",
    "OMFAPipeline": "omfa.pipeline",
    "FluxOMFA": "omfa.backbones.flux",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'omfa' has no attribute {name!r}")
