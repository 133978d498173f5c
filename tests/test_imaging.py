"""Upload preprocessing: hostile files, colour modes, EXIF, background removal, framing.

Person photos: scikit-image's astronaut and cameraman (real, half-body), and
a rendered full-body mannequin with a painted face (the only full-body
figure available offline); its silhouette is known exactly from the render.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as skdata

from benchmarks.reliability import hostile
from omfa.imaging import (
    PERSON_HEIGHT_FRACTION,
    ImageInputError,
    U2NetP,
    framing,
    load_image,
    prepare_garment,
    prepare_portrait,
    remove_background,
    warm_up,
)
from omfa.imaging.matting import BackgroundModelError, foreground_box
from omfa.mediapipe_models import POSE_LANDMARK_NAMES

LANDMARK = {name: i for i, name in enumerate(POSE_LANDMARK_NAMES)}
HW = (128, 96)  # the shipped model's canvas; the preprocessing takes any size (tests/test_canvas_sizes.py)

# Budget per upload, in CPU seconds of this process (all threads): unlike wall
# time it does not grow when other processes share the machine's cores.
TIME_LIMIT_S = 2.0
CASES = hostile.load_cases()


@pytest.fixture(scope="module", autouse=True)
def warm_models():
    """Build the models once, as the app does at start-up, so timings are per upload."""
    warm_up()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's note on bad_exif_jpeg
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_upload_gives_clear_error_or_image(case):
    start = time.process_time()
    if case.expect == "error":
        with pytest.raises(ImageInputError) as info:
            load_image(case.data)
        message = str(info.value)
        # The message tells the user what to do, not a decoder's internals alone.
        assert any(w in message.lower() for w in ("upload", "crop", "re-export", "downscale"))
    else:
        image = load_image(case.data)
        assert image.mode == "RGB" and min(image.size) >= 64
    assert time.process_time() - start < TIME_LIMIT_S


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation):
    image = np.asarray(load_image(hostile.exif_jpeg(orientation)))
    assert image.shape == (*hostile.PATTERN_HW, 3)
    np.testing.assert_allclose(hostile.quadrant_colours(image), hostile.QUADRANT_RGB, atol=12)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_colour_modes_are_converted_faithfully():
    by_name = {c.name: c for c in CASES}
    quadrants = np.array(hostile.QUADRANT_RGB)
    deep = np.asarray(load_image(by_name["png16_rgb"].data))
    np.testing.assert_array_equal(hostile.quadrant_colours(deep), quadrants)
    cmyk = np.asarray(load_image(by_name["cmyk_jpeg"].data))
    np.testing.assert_allclose(hostile.quadrant_colours(cmyk), quadrants, atol=30)
    ramp = np.asarray(load_image(by_name["png16_gray"].data))[0, :, 0].astype(int)
    assert ramp[0] == 0 and ramp[-1] == 255 and (np.diff(ramp) >= 0).all()
    palette = np.asarray(load_image(by_name["palette_transparency"].data))
    assert (palette[:, :40] == 255).all() and (palette[:, 60:] == (200, 20, 20)).all()
    rgba = load_image(by_name["rgba_half_transparent"].data, keep_alpha=True)
    assert rgba.mode == "RGBA" and np.asarray(rgba)[:, :40, 3].max() == 0
    flat = np.asarray(load_image(by_name["rgba_half_transparent"].data))
    assert (flat[:, :40] == 255).all()
    gif = np.asarray(load_image(by_name["animated_gif"].data))
    assert (gif == (255, 0, 0)).all()  # the first frame
    garbage_exif = np.asarray(load_image(by_name["bad_exif_jpeg"].data))
    np.testing.assert_allclose(hostile.quadrant_colours(garbage_exif), quadrants, atol=12)


def test_large_jpeg_is_downscaled_quickly():
    big = next(c for c in CASES if c.name == "large_jpeg_24mp")
    start = time.process_time()
    image = load_image(big.data)
    assert time.process_time() - start < 1.0
    assert image.size == (1024, 683)


def test_damaged_variants_never_raise_anything_else():
    rng = np.random.default_rng(7)
    sources = [
        hostile.encode(hostile.upright_pattern(), "PNG"),
        hostile.photo_jpeg(skdata.astronaut()),
        hostile.animated_gif(),
    ]
    variants = [v for s in sources for v in hostile.truncations(s, 12) + hostile.byte_flips(s, 12, rng)]
    outcomes = {"error": 0, "image": 0}
    for variant in variants:
        start = time.process_time()
        try:
            assert load_image(variant).mode == "RGB"
            outcomes["image"] += 1
        except ImageInputError:
            outcomes["error"] += 1
        assert time.process_time() - start < TIME_LIMIT_S
    assert outcomes["error"] >= 30  # every truncation below the header fails cleanly


def test_bombs_keep_memory_bounded():
    # A fresh interpreter, so its peak RSS reflects these loads alone (minus
    # the imports: omfa.canvas brings torch).
    script = (
        "import resource\nfrom benchmarks.reliability import hostile\n"
        "from omfa.imaging import load_image, ImageInputError\n"
        "files = [hostile.png_bomb(9000), hostile.png_bomb(20000), hostile.huge_header_jpeg(),\n"
        "         hostile.huge_screen_gif()]\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for data in files:\n"
        "    try:\n        load_image(data)\n    except ImageInputError:\n        pass\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    tests_dir = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests_dir.parent), str(tests_dir)]))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True, timeout=60
    )
    growth_mb = int(out.stdout.split()[-1])
    assert growth_mb < 50, f"peak RSS grew by {growth_mb} MB"  # a decoded 20000^2 bomb is 400 MB


def test_array_and_path_sources(tmp_path):
    pattern = hostile.upright_pattern()
    assert np.array_equal(np.asarray(load_image(pattern)), pattern)
    as_float = np.asarray(load_image(pattern / 255.0))
    assert np.abs(as_float.astype(int) - pattern).max() <= 1
    as_16 = np.asarray(load_image(pattern.astype(np.uint16) * 257))
    assert np.array_equal(as_16, pattern)
    with pytest.raises(ImageInputError, match=r"span \[30, 230\]"):
        load_image(pattern.astype(np.float32))
    with pytest.raises(ImageInputError, match=r"shape is \(128, 96, 2\)"):
        load_image(pattern[..., :2])
    path = tmp_path / "photo.jpg"
    path.write_bytes(hostile.exif_jpeg(6))
    np.testing.assert_allclose(hostile.quadrant_colours(np.asarray(load_image(path))), hostile.QUADRANT_RGB, atol=12)
    with pytest.raises(ImageInputError, match="no image file at 'missing.png'"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageInputError, match="the limit is 100 bytes"):
        load_image(path, max_bytes=100)


def test_pil_image_of_refused_format():
    import io

    ico = Image.open(io.BytesIO(hostile.encode(hostile.upright_pattern(), "ICO")))
    with pytest.raises(ImageInputError, match="ICO images are not supported"):
        load_image(ico)


# --- framing geometry on an ideal standing body (analytic) -----------------


def _ideal_body(top: float = 50.0, height: float = 400.0, axis_x: float = 200.0):
    """Landmarks of a standing body at exactly the STATURE_FRACTION proportions,
    in a (500, 400) photo, and its matte (a column from head top to soles)."""
    xy = np.zeros((33, 2), np.float32)
    vis = np.ones(33, np.float32)
    xy[:, 0] = axis_x
    for _, names, frac in framing.STATURE_FRACTION:
        for name in names:
            side = -1 if name.startswith("right") else 1
            xy[LANDMARK[name]] = (axis_x + side * 0.1 * height, top + frac * height)
    xy[LANDMARK["nose"]] = (axis_x, top + framing.NOSE_FRACTION * height)
    mask = np.zeros((500, 400), np.float32)
    mask[int(top) : int(top + height), int(axis_x - 40) : int(axis_x + 40)] = 1.0
    return xy, vis, mask


def test_frame_person_full_body_is_exact():
    xy, vis, mask = _ideal_body()
    frame = framing.frame_person(xy, vis, mask, HW)
    assert frame.full_body and frame.visible_to == "feet"
    # The feet group's lowest landmark sits at 0.985 of the height.
    assert frame.head_top_y == 50.0 and frame.height_px == pytest.approx(400.0, rel=1e-4)
    ch, cw = HW
    head, soles = frame.placement.apply(np.array([[200.0, 50.0], [200.0, 450.0]]))
    np.testing.assert_allclose(head, [cw / 2, (framing.FLOOR_FRACTION - PERSON_HEIGHT_FRACTION) * ch], atol=1e-3)
    np.testing.assert_allclose(soles, [cw / 2, framing.FLOOR_FRACTION * ch], atol=1e-3)


@pytest.mark.parametrize(
    "hidden, group, whole",
    [(("feet",), "ankles", True), (("feet", "ankles"), "knees", False), (("feet", "ankles", "knees"), "hips", False)],
)
def test_frame_person_lower_groups_extrapolate_exactly(hidden, group, whole):
    xy, vis, mask = _ideal_body()
    for name, names, _ in framing.STATURE_FRACTION:
        if name in hidden:
            vis[[LANDMARK[n] for n in names]] = 0.0
    frame = framing.frame_person(xy, vis, mask, HW)
    assert frame.visible_to == group and frame.full_body == whole
    assert frame.height_px == pytest.approx(400.0, rel=1e-4)
    assert ("Half-body" in frame.note) != whole


def test_frame_person_ignores_a_folded_body_and_needs_shoulders():
    xy, vis, mask = _ideal_body()
    for name in ("left_knee", "right_knee"):  # knees guessed above the hips
        xy[LANDMARK[name], 1] = 200.0
    frame = framing.frame_person(xy, vis, mask, HW)
    assert frame.visible_to == "hips" and frame.height_px == pytest.approx(400.0, rel=1e-4)
    vis[LANDMARK["left_shoulder"]] = 0.1
    with pytest.raises(framing.FramingError, match="both shoulders"):
        framing.frame_person(xy, vis, mask, HW)


def test_frame_object_fits_and_centres():
    placement = framing.frame_object((100, 50, 300, 450), HW)  # 200 x 400 box
    corners = placement.apply(np.array([[100.0, 50.0], [300.0, 450.0]]))
    # Height-limited: 0.9 * 128 px tall, centred.
    np.testing.assert_allclose(corners[1] - corners[0], [0.45 * 128, 0.9 * 128], atol=1e-4)
    np.testing.assert_allclose(corners.mean(axis=0), [48, 64], atol=1e-4)


# --- background removal and framing on rendered and real people -------------


def _paint_face(rgb: np.ndarray, silhouette: np.ndarray) -> np.ndarray:
    """Hair, eyes, brows, nose and mouth on the mannequin's blank head, so that
    the face and pose detectors see a person."""
    ys, xs = np.nonzero(silhouette)
    top = int(ys.min())
    cx = float(xs[ys < top + 20].mean())
    img = Image.fromarray(rgb)
    d = ImageDraw.Draw(img)
    cy, w = top + 32, 14
    d.ellipse([cx - w - 2, top - 4, cx + w + 2, top + 14], fill=(60, 40, 30))
    for sx in (-1, 1):
        d.ellipse([cx + sx * 6 - 3, cy - 6, cx + sx * 6 + 3, cy - 2], fill=(40, 30, 30))
        d.line([cx + sx * 3, cy - 10, cx + sx * 10, cy - 10], fill=(50, 35, 30), width=2)
    d.line([cx, cy - 2, cx - 1, cy + 6], fill=(150, 100, 80), width=2)
    d.line([cx - 5, cy + 12, cx + 5, cy + 12], fill=(150, 50, 50), width=2)
    return np.asarray(img)


@pytest.fixture(scope="module")
def mannequin_photo() -> tuple[np.ndarray, np.ndarray]:
    """A 512x384 full-body render, arms lowered, blue top and grey trousers on
    white, with a painted face; and its true silhouette (H, W) bool."""
    import trimesh
    from mannequin import Mannequin

    from omfa.gl import pyrender
    from omfa.pose.render import release_renderer

    body = Mannequin("wooden")
    pose = {k: np.array(v) for k, v in body.rest_pose().items()}
    joints = pose["body_pose"].reshape(21, 3).copy()
    joints[15, 2], joints[16, 2] = -1.1, 1.1  # shoulders: arms down
    pose["body_pose"] = joints.reshape(pose["body_pose"].shape)
    verts = np.asarray(body.vertices(pose), dtype=np.float64)
    y = (verts[:, 1] - verts[:, 1].min()) / np.ptp(verts[:, 1])
    colours = np.tile([217, 166, 128, 255], (len(verts), 1))  # skin
    colours[(y > 0.45) & (y < 0.82)] = (50, 80, 180, 255)
    colours[(y > 0.05) & (y <= 0.5)] = (40, 40, 40, 255)
    mesh = trimesh.Trimesh(verts, body.faces, vertex_colors=colours.astype(np.uint8), process=False)
    scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.4, 0.4, 0.4])
    scene.add(pyrender.Mesh.from_trimesh(mesh, smooth=True))
    camera_pose = np.eye(4)
    camera_pose[:3, 3] = [0.0, (verts[:, 1].min() + verts[:, 1].max()) / 2, 4.0]
    scene.add(pyrender.PerspectiveCamera(yfov=np.deg2rad(30)), pose=camera_pose)
    scene.add(pyrender.DirectionalLight(intensity=3.0), pose=camera_pose)
    renderer = pyrender.OffscreenRenderer(384, 512)
    try:
        colour, depth = renderer.render(scene)
    finally:  # not renderer.delete(): it would terminate the EGL display of every other live renderer
        release_renderer(renderer)
    silhouette = depth > 0
    rgb = np.where(silhouette[..., None], colour[..., :3], 255).astype(np.uint8)
    return _paint_face(rgb, silhouette), silhouette


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_u2netp_cuts_out_the_rendered_person(mannequin_photo):
    rgb, silhouette = mannequin_photo
    cut = remove_background(rgb)
    assert cut.method == "u2netp" and cut.alpha.shape == silhouette.shape
    # The painted hair lies outside the render's silhouette: compare below it.
    rows = slice(np.nonzero(silhouette)[0].min() + 15, None)
    assert _iou(cut.alpha[rows] > 0.5, silhouette[rows]) > 0.9
    blank = remove_background(np.full((200, 150, 3), 240, np.uint8))
    assert blank.alpha.max() < 0.1  # nothing salient stays empty, not stretched noise


def test_background_fallbacks(mannequin_photo):
    rgb, silhouette = mannequin_photo
    missing = U2NetP("/nonexistent/u2netp.onnx")
    cut = remove_background(rgb, u2netp=missing)
    assert cut.method == "selfie" and _iou(cut.alpha > 0.5, silhouette) > 0.6
    with pytest.raises(BackgroundModelError, match="u2netp model not found"):
        remove_background(rgb, method="u2netp", u2netp=missing)
    rgba = np.dstack([rgb, np.where(silhouette, 255, 0).astype(np.uint8)])
    own = remove_background(rgba)
    assert own.method == "alpha" and np.array_equal(own.alpha > 0.5, silhouette)


@pytest.fixture(scope="module")
def full_body(mannequin_photo):
    """The full-body render uploaded as a PNG: (PreparedPortrait, CPU seconds taken)."""
    start = time.process_time()
    portrait = prepare_portrait(hostile.encode(mannequin_photo[0], "PNG"), size_hw=HW)
    return portrait, time.process_time() - start


def test_full_body_portrait_matches_render_framing(full_body):
    portrait, seconds = full_body
    assert seconds < TIME_LIMIT_S
    ch, cw = HW
    assert portrait.image.shape == (ch, cw, 3) and portrait.alpha.shape == (ch, cw)
    assert portrait.full_body and "Whole body" in portrait.info
    x0, y0, x1, y1 = foreground_box(portrait.alpha)
    # Head top to soles spans the render's 1.72 m body: 0.748 of 128 px = 95.7 px,
    # soles on the floor row 123.5 (1 px of tolerance for the matte's edges).
    assert abs((y1 - y0) - PERSON_HEIGHT_FRACTION * ch) <= 2.0
    assert abs(y1 - (1 - 0.08 / 2.3) * ch) <= 1.5
    assert abs((x0 + x1) / 2 - cw / 2) <= 2.0
    assert (portrait.image[:, :5] == 255).all()  # white background
    nose = portrait.keypoints[0]
    assert y0 < nose[1] < y0 + 0.15 * (y1 - y0) and abs(nose[0] - cw / 2) < 4


@pytest.mark.parametrize("cut_row", [280, 360, 400])
def test_half_body_keeps_the_full_body_scale(mannequin_photo, full_body, cut_row):
    rgb, _ = mannequin_photo
    full = full_body[0]
    half = prepare_portrait(np.ascontiguousarray(rgb[:cut_row]), size_hw=HW)
    assert not half.full_body and "Half-body photo" in half.info
    # Shoulder width on the canvas measures the scale: within 8 % of the full body's.
    width = lambda p: abs(p.keypoints[11, 0] - p.keypoints[12, 0])  # noqa: E731
    assert abs(width(half) / width(full) - 1) < 0.08
    assert abs(half.keypoints[0, 1] - full.keypoints[0, 1]) < 4  # the nose stays put


def test_portrait_person_count_errors(mannequin_photo):
    rgb, _ = mannequin_photo
    with pytest.raises(ImageInputError, match="shows 2 people"):
        prepare_portrait(np.concatenate([rgb, rgb], axis=1), size_hw=HW)
    with pytest.raises(ImageInputError, match="no person found in the portrait"):
        prepare_portrait(hostile.non_person_photo(), size_hw=HW)
    with pytest.raises(ImageInputError, match="no person found"):
        prepare_portrait(hostile.no_garment_photo(), size_hw=HW)


def test_real_half_body_photos():
    astronaut = prepare_portrait(skdata.astronaut(), size_hw=HW)
    assert not astronaut.full_body and "Half-body" in astronaut.info
    camera = prepare_portrait(skdata.camera(), size_hw=HW)  # greyscale (512, 512)
    assert not camera.full_body
    for p in (astronaut, camera):
        # The head starts where a 1.72 m body's head does on the canvas.
        y0 = foreground_box(p.alpha)[1]
        top = (1 - 0.08 / 2.3 - PERSON_HEIGHT_FRACTION) * HW[0]
        assert abs(y0 - top) < 4


def _tshirt_photo() -> np.ndarray:
    """A striped T-shirt laid flat on a light backdrop, with sensor noise: (480, 400, 3)."""
    img = Image.new("RGB", (400, 480), (235, 235, 230))
    d = ImageDraw.Draw(img)
    d.polygon(
        [
            (130, 60),
            (170, 50),
            (200, 80),
            (230, 50),
            (270, 60),
            (360, 130),
            (320, 190),
            (290, 160),
            (290, 420),
            (110, 420),
            (110, 160),
            (80, 190),
            (40, 130),
        ],
        fill=(40, 90, 200),
    )
    for y in range(70, 420, 30):
        d.line([(110, y), (290, y)], fill=(240, 240, 240), width=8)
    noise = np.random.default_rng(0).normal(0, 4, (480, 400, 3))
    return np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8)


def test_flat_garment_is_centred_on_white():
    start = time.process_time()
    garment = prepare_garment(hostile.photo_jpeg(_tshirt_photo()), size_hw=HW)
    assert time.process_time() - start < TIME_LIMIT_S
    assert garment.kind == "flat" and garment.portrait is None
    x0, y0, x1, y1 = foreground_box(garment.alpha)
    ch, cw = HW
    # The shirt (320 x 370 px) is width-limited: 90 % of 96 px wide.
    assert abs((x1 - x0) - 0.9 * cw) <= 2 and abs((x0 + x1) / 2 - cw / 2) <= 1.5
    assert abs((y0 + y1) / 2 - ch / 2) <= 1.5
    assert (garment.image[:3] == 255).all()
    centre = garment.image[ch // 2 - 5 : ch // 2 + 5, cw // 2 - 5 : cw // 2 + 5].reshape(-1, 3)
    assert (centre[:, 2] > 150).any() and (centre.min(axis=1) > 200).any()  # blue and white stripes


def test_garment_source_kind_and_errors(mannequin_photo):
    rgb, _ = mannequin_photo
    dressed = prepare_garment(rgb, size_hw=HW)
    assert dressed.kind == "person" and dressed.portrait is not None
    assert "try-off" in dressed.info
    with pytest.raises(ImageInputError, match="no garment found"):
        prepare_garment(hostile.no_garment_photo(), size_hw=HW)
    noise = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    with pytest.raises(ImageInputError, match="no background around the garment"):
        prepare_garment(noise, size_hw=HW)
    with pytest.raises(ImageInputError, match="shows 2 people"):
        prepare_garment(np.concatenate([rgb, rgb], axis=1), size_hw=HW)


def test_framing_constants_match_the_renderer():
    from omfa.imaging import framing
    from omfa.pose import render

    assert framing.VIEW_HEIGHT_M == render.VIEW_HEIGHT_M
    assert framing.FLOOR_MARGIN_M == render.FLOOR_MARGIN_M


@pytest.mark.slow
def test_u2netp_matches_rembg(monkeypatch):
    """Same preprocessing and model as rembg's U2netpSession at its 320x320: masks agree to one
    grey level. Slow: rembg's first import compiles pymatting with numba (~45 s)."""
    import onnxruntime as ort

    from omfa.imaging.matting import U2NETP_PATH

    monkeypatch.setenv("U2NET_HOME", str(U2NETP_PATH.parent))  # never a download
    from rembg.sessions.u2netp import U2netpSession

    # rembg's session object on the shipped file (its checksum differs from rembg's: free input size)
    session = U2netpSession.__new__(U2netpSession)
    session.model_name = "u2netp"
    session.inner_session = ort.InferenceSession(str(U2NETP_PATH), providers=["CPUExecutionProvider"])
    photo = Image.fromarray(skdata.astronaut())
    theirs = np.asarray(session.predict(photo)[0])
    prob = U2NetP().probability(np.asarray(photo), size=320)
    stretched = (prob - prob.min()) / (prob.max() - prob.min())  # rembg's min-max step
    ours = np.asarray(Image.fromarray((stretched * 255).astype(np.uint8)).resize(photo.size, Image.Resampling.LANCZOS))
    assert np.abs(theirs.astype(int) - ours).max() <= 1


def test_models_load_and_run_without_network(monkeypatch, mannequin_photo):
    """Fresh model holders (files read, graphs built) with every socket refused."""
    import socket

    from omfa.mediapipe_models import MediapipeModels

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    models, u2netp = MediapipeModels(), U2NetP()
    portrait = prepare_portrait(mannequin_photo[0], mediapipe=models, u2netp=u2netp, size_hw=HW)
    assert portrait.full_body
    assert remove_background(mannequin_photo[0], method="selfie", mediapipe=models).method == "selfie"
    models.close()


def test_u2netp_masks_at_the_fast_size_match_rembgs_size_on_the_examples():
    """The matting runs u2netp at U2NETP_SIZE (224) for half the cost; on every example photo its
    mask stays within IoU 0.95 of the mask at rembg's 320."""
    from omfa.imaging.matting import U2NETP_SIZE
    from omfa.studio.context import EXAMPLES_DIR

    model = U2NetP()
    for path in sorted(EXAMPLES_DIR.glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        masks = []
        for size in (U2NETP_SIZE, 320):
            prob = Image.fromarray(model.probability(rgb, size)).resize(rgb.shape[1::-1], Image.Resampling.BILINEAR)
            masks.append(np.asarray(prob) > 0.5)
        iou = (masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum()
        assert iou >= 0.95, f"{path.name}: IoU {iou:.3f} between the {U2NETP_SIZE} and 320 masks"
    with pytest.raises(ValueError, match="multiple of 32"):
        model.probability(rgb, 100)
