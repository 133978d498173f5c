"""The `omfa pose` command, run in-process through the top-level dispatcher."""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data

from omfa.cli import main
from omfa.pose.presets import load_presets, read_preset
from omfa.pose.render import PALETTE


def test_list_names_every_preset(capsys) -> None:
    assert main(["pose", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(load_presets()) >= 20
    assert any(line.startswith("back_view") and "yaw 180" in line for line in out)


def test_render_thumbnail_map_and_glb(tmp_path) -> None:
    assert main(["pose", "render", "waving", "--yaw", "30", "--out", str(tmp_path / "t.png")]) == 0
    assert Image.open(tmp_path / "t.png").size == (256, 256)
    assert main(["pose", "render", "waving", "--style", "map", "--out", str(tmp_path / "m.png")]) == 0
    pose_map = np.asarray(Image.open(tmp_path / "m.png"))
    assert pose_map.shape == (128, 96, 3)
    assert {tuple(c) for c in np.unique(pose_map.reshape(-1, 3), axis=0)} <= {tuple(c) for c in PALETTE} | {(0, 0, 0)}
    assert (
        main(["pose", "render", "t_pose", "--size", "64x48", "--style", "map", "--out", str(tmp_path / "s.png")]) == 0
    )
    assert Image.open(tmp_path / "s.png").size == (48, 64)
    assert main(["pose", "render", "a_pose", "--out", str(tmp_path / "a.glb")]) == 0
    assert (tmp_path / "a.glb").read_bytes()[:4] == b"glTF"


def test_from_photo_writes_a_renderable_pose(tmp_path, capsys) -> None:
    photo = tmp_path / "Astronaut Portrait.png"
    Image.fromarray(data.astronaut()).save(photo)
    out = tmp_path / "pose.json"
    assert main(["pose", "from-photo", str(photo), "--out", str(out), "--preview", str(tmp_path / "p.png")]) == 0
    preset = read_preset(out)
    assert preset.name == "astronaut_portrait" and preset.tags == ("from_photo",)
    assert Image.open(tmp_path / "p.png").size == (512, 256)  # photo | thumbnail
    assert main(["pose", "render", str(out), "--out", str(tmp_path / "again.png")]) == 0
    assert "confidence" in capsys.readouterr().out


def test_sheet_and_errors(tmp_path, capsys) -> None:
    assert main(["pose", "sheet", "--out", str(tmp_path / "sheet.png"), "--cell", "64", "--columns", "7"]) == 0
    rows = -(-len(load_presets()) // 7)
    assert Image.open(tmp_path / "sheet.png").size == (7 * 64, rows * (64 + 18))
    assert main(["pose", "render", "moonwalk", "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown pose preset 'moonwalk'" in capsys.readouterr().err
    assert main(["pose", "from-photo", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "x.json")]) == 2
