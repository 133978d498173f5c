"""The `omfa` command runs the app's tasks end to end on a tiny seeded checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omfa.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from engine_helpers import tiny_model

    from omfa.diffusion import make_scheduler
    from omfa.pipeline import OMFAPipeline

    path = tmp_path_factory.mktemp("ckpt")
    OMFAPipeline(tiny_model(0, sample_size=(128, 96)), make_scheduler("ddim")).save_pretrained(path)
    return path


def test_tryon_and_tryoff_write_images(checkpoint, tmp_path):
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "tryon",
                "--portrait",
                str(EXAMPLES / "portrait.png"),
                "--top",
                str(EXAMPLES / "top.png"),
                "--pose",
                "walking",
                "--out",
                str(out),
                "--model",
                str(checkpoint),
                "--steps",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    image = np.asarray(Image.open(out))
    assert image.ndim == 3 and image.shape[0] > image.shape[1] and image.std() > 1
    assert image.shape == (128, 96, 3)  # the model's own size, not the app's enlarged display
    assert (
        main(
            [
                "tryoff",
                "--photo",
                str(EXAMPLES / "dressed.png"),
                "--which",
                "both",
                "--out-dir",
                str(tmp_path / "off"),
                "--model",
                str(checkpoint),
                "--steps",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert {p.name for p in (tmp_path / "off").iterdir()} == {"upper.png", "lower.png"}


def test_bad_input_is_one_sentence_and_exit_code_2(checkpoint, tmp_path, capsys):
    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image")
    code = main(
        [
            "tryon",
            "--portrait",
            str(bogus),
            "--top",
            str(EXAMPLES / "top.png"),
            "--out",
            str(tmp_path / "x.png"),
            "--model",
            str(checkpoint),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "not a recognised image" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_unknown_command_lists_the_commands(capsys):
    assert main(["dance"]) == 2
    assert "tryon" in capsys.readouterr().err


def test_notes_about_the_inputs_are_printed(checkpoint, tmp_path, capsys):
    (checkpoint / "README.md").write_text(
        "---\ntraining_data:\n  kind: renders\n  description: rendered mannequins\n---\n# A tiny model\n"
    )
    args = ["tryon", "--portrait", str(EXAMPLES / "astronaut.png"), "--top", str(EXAMPLES / "top.png")]
    code = main([*args, "--out", str(tmp_path / "x.png"), "--model", str(checkpoint), "--steps", "1", "--quiet"])
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert code == 0 and len(notes) == 2
    assert "real photograph" in notes[0] and "trained only on rendered mannequins" in notes[0]
    assert "only down to the shoulders" in notes[1]
