"""The studio: the app's runs without Gradio, shared by the app (`omfa.app`) and the `omfa` command.

- ``card``: the checkpoint's model card, and what it says the model was trained on.
- ``context``: what every run shares (`StudioContext`: pipeline, body, render thread, prepared uploads, presets).
- ``settings``: `RunSettings` and `sample_stages`, the one part of a run that needs the accelerator.
- ``runs``: try-on, try-off, outfit and pose gallery as generators of `Frame`s at the model's canvas size.
- ``cli``: ``omfa tryon / tryoff / transfer / multiview``.

Nothing here imports Gradio (tests/test_layering.py).
"""
