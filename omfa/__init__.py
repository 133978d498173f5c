"""OMFA Studio: one diffusion model for virtual try-on, try-off and any-pose views."""

__version__ = "0.1.0"
