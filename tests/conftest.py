"""Shared fixtures: tiny seeded models that run in seconds."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
# Apps served by the tests run eagerly: compiling every task in the background would take the
# suite's two cores for minutes (tests/test_acceleration.py checks the compiler itself).
os.environ.setdefault("OMFA_COMPILE", "off")


import pytest  # noqa: E402
from real_fixtures import deepfashion, dresscode, viton_hd  # noqa: E402, F401  (real datasets' layouts)


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one mixed-precision setting per process; each test's training run chooses its own."""
    yield
    state = sys.modules.get("accelerate.state")  # nothing to reset (or import) where no test used accelerate
    if state is not None:
        state.AcceleratorState._reset_state()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared CPU extra threads cost 10-40x
    (`pytestmark = pytest.mark.usefixtures("one_torch_thread")` in the modules that train them)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def body():
    """The default mannequin body, built once per test session (posing is read-only)."""
    from omfa.pose.body import MannequinBody

    return MannequinBody()


@pytest.fixture(scope="session")
def renderer():
    """One shared offscreen renderer for the pose tests."""
    from omfa.pose.render import PoseRenderer

    with PoseRenderer() as shared:
        yield shared


@pytest.fixture(scope="module")
def cat(tmp_path_factory) -> str:
    """A photo with no garment and no person in it: scikit-image's public-domain cat (Chelsea)."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "cat.png"
    Image.fromarray(data.chelsea()).save(path)
    return str(path)
