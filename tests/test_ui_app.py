"""End to end: the app served on localhost, driven through `gradio_client` like any API user.

The app runs the shipped checkpoint when it exists, else a tiny seeded model
saved to a temporary folder (the same loading path: `app.build(folder)`).
"""

from __future__ import annotations

import io
import socket
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import tiny_model
from PIL import Image

from omfa.diffusion import make_scheduler
from omfa.pipeline import DEFAULT_MODEL_DIR, OMFAPipeline
from omfa.studio.card import ModelCard
from omfa.studio.context import EXAMPLES_DIR

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
PORTRAIT, TOP, BOTTOM, DRESSED, ASTRONAUT = (
    str(EXAMPLES_DIR / name) for name in ("portrait.png", "top.png", "bottom.png", "dressed.png", "astronaut.png")
)


def model_folder(tmp_root: Path) -> Path:
    """The shipped checkpoint, or a tiny seeded one written to `tmp_root`."""
    if (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        return DEFAULT_MODEL_DIR
    folder = tmp_root / "omfa-test-model"
    OMFAPipeline(tiny_model(0, sample_size=(128, 96)), make_scheduler("ddim")).save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return model_folder(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def client(folder):
    demo = app.build(folder)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, **app.launch_kwargs()
    )
    yield gradio_client.Client(url, verbose=False)
    demo.close()


def file(path: str) -> dict:
    return gradio_client.handle_file(path)


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def run(client, api_name: str, *args):
    """All output tuples a streamed endpoint sent, in order."""
    job = client.submit(*args, api_name=api_name)
    job.result()
    return job.outputs()


def test_try_on_streams_one_preview_per_step_then_the_final_image(client):
    outputs = run(client, "/try_on", file(PORTRAIT), file(TOP), "upper", "preset", "walking", 0, 4, 2.0, 1, "ddim")
    statuses = [out[-1] for out in outputs]
    steps = [out for out in outputs if "step" in out[-1]]
    assert [out[-1] for out in steps] == [f"Try-on: step {k}/4" for k in range(1, 5)]
    assert statuses[0].startswith("Preparing") and statuses[-1].startswith("Try-on done in")
    previews = [pixels(out[0]) for out in steps]
    assert all(p.shape == (128, 96, 3) for p in previews)
    assert not np.array_equal(previews[0], previews[-1])
    np.testing.assert_array_equal(pixels(outputs[-1][0]), previews[-1])  # the final image is the last preview
    result, reference, top, bottom, pose, notice, percent, _ = outputs[-1]
    assert reference and top and pose and bottom is None and percent == 100
    assert notice == ""  # a render of the fitting room, whole body: nothing to warn about
    assert [out[-2] for out in steps] == [25, 50, 75, 100]  # the progress bar, in percent
    assert pixels(pose)[0, 0].tolist() == [0, 0, 0]  # a pose map on black


def test_same_seed_same_image_other_seed_another(client):
    def final(seed: int) -> np.ndarray:
        out = run(client, "/try_on", file(PORTRAIT), file(BOTTOM), "lower", "preset", "a_pose", 0, 2, 2.0, seed, "ddim")
        return pixels(out[-1][0])

    first = final(11)
    np.testing.assert_array_equal(first, final(11))
    assert np.abs(first.astype(int) - final(12)).mean() > 1.0


def test_try_off_of_both_garments(client):
    outputs = run(client, "/try_off", file(DRESSED), "both", 3, 2.0, 0, "euler")
    assert [out[-1] for out in outputs if "step" in out[-1]] == [f"Try-off: step {k}/3" for k in range(1, 4)]
    upper, lower, reference, _, _, status = outputs[-1]
    assert pixels(upper).shape == pixels(lower).shape == (128, 96, 3) and status.startswith("Try-off done")


def test_transfer_from_a_person_photo_shows_the_extracted_garment(client):
    outputs = run(client, "/try_on", file(PORTRAIT), file(DRESSED), "upper", "preset", "a_pose", 0, 2, 2.0, 0, "ddim")
    statuses = [out[-1] for out in outputs]
    assert "Extracting the garment (try-off): step 2/2" in statuses and "Try-on: step 2/2" in statuses
    first_try_on = statuses.index("Try-on: step 1/2")
    assert outputs[first_try_on - 1][2] is not None  # the extracted top is shown before it is worn
    assert outputs[-1][0] is not None and outputs[-1][2] is not None


def test_outfit_with_a_top_and_a_bottom(client):
    outputs = run(
        client, "/outfit", file(PORTRAIT), file(TOP), file(BOTTOM), "preset", "runway_stride", 0, 2, 2.0, 0, "ddim"
    )
    result, reference, top, bottom, pose, _, _, status = outputs[-1]
    assert result and top and bottom and status.startswith("Try-on done")


def test_pose_gallery_of_four_views(client):
    outputs = run(client, "/pose_gallery", file(PORTRAIT), ["a_pose", "side_view"], [0, 90], 2, 2.0, 0, "ddim")
    sizes = [len(out[5] or []) for out in outputs]
    # the four views are one batch (RunSettings.view_batch): they appear together and form step by step
    assert sizes == sorted(sizes) and set(sizes) - {0} == {4}
    captions = [item["caption"] for item in outputs[-1][5]]
    assert captions == ["A-pose, turn 0", "A-pose, turn 90", "Side view, turn 0", "Side view, turn 90"]
    # All views in one download, named by order, pose and turn, at the size shown.
    assert all(out[6] is None for out in outputs[:-1])
    with zipfile.ZipFile(outputs[-1][6]) as archive:
        names = archive.namelist()
        assert names == [
            "01_a-pose_turn_0.png",
            "02_a-pose_turn_90.png",
            "03_side_view_turn_0.png",
            "04_side_view_turn_90.png",
        ]
        first = np.asarray(Image.open(io.BytesIO(archive.read(names[0]))).convert("RGB"))
    np.testing.assert_array_equal(first, pixels(outputs[-1][5][0]["image"]))


def test_a_real_photograph_as_portrait(client):
    outputs = run(
        client, "/try_on", file(ASTRONAUT), file(TOP), "upper", "preset", "relaxed_stand", 0, 2, 2.0, 0, "ddim"
    )
    result, reference, *_ = outputs[-1]
    portrait = pixels(reference)
    assert pixels(result).shape == (128, 96, 3)
    # The astronaut was cut out onto white: the corners are background, the centre is not.
    assert (portrait[:10, :10] > 245).all() and portrait[50:83, 40:57].mean() < 230


def test_errors_reach_the_user_as_sentences(client):
    with pytest.raises(gradio_client.exceptions.AppError, match="No person found in the portrait"):
        run(client, "/try_on", file(TOP), file(TOP), "upper", "preset", "a_pose", 0, 2, 2.0, 0, "ddim")
    with pytest.raises(gradio_client.exceptions.AppError, match="A flat garment photo shows one garment"):
        run(client, "/try_on", file(PORTRAIT), file(TOP), "both", "preset", "a_pose", 0, 2, 2.0, 0, "ddim")


def test_pose_studio_endpoints(client):
    figure, pose_map, model3d, yaw, x, y, z, info = client.predict("t_pose", "left_elbow", api_name="/pose_preset")
    assert pixels(figure).shape == (384, 288, 3) and pixels(pose_map).shape == (128, 96, 3)
    assert Path(model3d).read_bytes()[:4] == b"glTF" and "T pose" in info
    # The studio pose is per session: this client's session now holds the T-pose, turned by /pose_yaw.
    turned = client.predict("left_elbow", 90, api_name="/pose_yaw")
    assert turned[3] == 90 and not np.array_equal(pixels(turned[1]), pixels(pose_map))
    bent = client.predict("left_elbow", 0, -120, 0, api_name="/pose_joint")
    assert bent[5]["value"] == -120 and bent[5]["minimum"] == -150  # slider updates carry their range
    assert "T pose" in bent[7]


def test_a_real_photo_gets_a_notice_from_the_models_card(client, folder):
    card = ModelCard.read(folder)
    outputs = run(client, "/try_on", file(ASTRONAUT), file(TOP), "upper", "preset", "a_pose", 0, 1, 2.0, 0, "ddim")
    notice = outputs[-1][5]
    # A head-and-shoulders photo for a whole-body pose: said next to the result, with the fix.
    assert "only down to the shoulders" in notice and "full-body photo" in notice
    if card is not None and card.trained_on_renders:  # the shipped card says what the model was trained on
        assert "real photograph" in notice and card.training_description in notice and "--model" in notice


def test_a_photo_without_a_garment_is_refused_and_try_off_says_no_person(client, cat):
    with pytest.raises(gradio_client.exceptions.AppError, match="No garment found in the garment photo: it shows no"):
        run(client, "/try_on", file(PORTRAIT), file(cat), "upper", "preset", "a_pose", 0, 1, 2.0, 0, "ddim")
    with pytest.raises(gradio_client.exceptions.AppError, match="No person found in the photo"):
        run(client, "/try_off", file(cat), "upper", 1, 2.0, 0, "ddim")
    with pytest.raises(gradio_client.exceptions.AppError, match="No person found in the photo"):
        run(client, "/try_off", file(TOP), "upper", 1, 2.0, 0, "ddim")  # a garment alone: no person, no guess


def test_a_failed_run_says_so_in_its_status(client):
    job = client.submit(file(TOP), file(TOP), "upper", "preset", "a_pose", 0, 1, 2.0, 0, "ddim", api_name="/try_on")
    with pytest.raises(gradio_client.exceptions.AppError):
        job.result()
    assert job.outputs()[-1][-1].startswith("Not run: No person found in the portrait")


def test_try_off_of_a_bottom_the_photo_does_not_show(client):
    with pytest.raises(gradio_client.exceptions.AppError, match="the bottom is not visible and would be invented"):
        run(client, "/try_off", file(ASTRONAUT), "lower", 1, 2.0, 0, "ddim")
    upper, lower, _, notice, _, status = run(client, "/try_off", file(ASTRONAUT), "both", 1, 2.0, 0, "ddim")[-1]
    assert upper and lower and status.startswith("Try-off done")
    assert "The bottom is the model's guess" in notice and "down to the shoulders" in notice


def test_a_user_error_is_one_log_line(client, cat, capfd, caplog):
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="omfa.app"):
        with pytest.raises(gradio_client.exceptions.AppError):
            run(client, "/try_on", file(TOP), file(TOP), "upper", "preset", "a_pose", 0, 1, 2.0, 0, "ddim")
        with pytest.raises(gradio_client.exceptions.AppError):
            run(client, "/try_off", file(cat), "upper", 1, 2.0, 0, "ddim")
    assert "Traceback" not in capfd.readouterr().err  # Gradio printed none
    assert [record.getMessage() for record in caplog.records if record.name == "omfa.app"] == [
        "user error in try_on: No person found in the portrait; upload a photo of one person seen from the front, "
        "at least from the head down to the chest",
        "user error in try_off: No person found in the photo; upload a photo of one person seen from the front, "
        "at least from the head down to the chest",
    ]


def test_copying_the_pose_of_a_photo_without_a_person_keeps_the_pose(client, cat):
    client.predict("t_pose", "left_elbow", api_name="/pose_preset")
    *kept, info, preset = client.predict(file(cat), "left_elbow", api_name="/pose_from_photo")
    assert all(value == {"__type__": "update"} for value in kept + [preset])  # nothing replaced by an error
    assert info.startswith("**T pose**") and "Could not copy a pose: No person found in the photo" in info
    # A copied pose is no preset's: the preset box is emptied, and emptying it loads nothing.
    *_, info, preset = client.predict(file(PORTRAIT), "left_elbow", api_name="/pose_from_photo")
    assert preset is None and info.startswith("**From a photo**")
    turned = client.predict("left_elbow", 45, api_name="/pose_yaw")
    assert "From a photo" in turned[-1]
