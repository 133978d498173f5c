"""Real-dataset fixture folders in each dataset's exact layout (VITON-HD, DressCode, DeepFashion-MultiModal).

The loaders' tests (tests/test_data_real.py) and the training tests share them: conftest.py registers
the fixtures `viton_hd`, `dresscode` and `deepfashion`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# A drawn "photo": white background, skin-coloured head and arms, a red top and blue trousers.
SKIN, TOP, BOTTOM = (225, 180, 150), (200, 30, 30), (30, 40, 160)


def draw_person(size_wh: tuple[int, int], parsing_classes: dict[str, int]) -> tuple[Image.Image, Image.Image]:
    """(RGB photo, P-mode parsing) of a block figure; regions in fractions of the image."""
    w, h = size_wh
    photo = np.full((h, w, 3), 255, np.uint8)
    parsing = np.zeros((h, w), np.uint8)
    regions = [
        ("skin", SKIN, (0.42, 0.05, 0.58, 0.2)),
        ("top", TOP, (0.3, 0.2, 0.7, 0.55)),
        ("bottom", BOTTOM, (0.33, 0.55, 0.67, 0.95)),
    ]
    for name, color, (x0, y0, x1, y1) in regions:
        photo[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = color
        parsing[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = parsing_classes[name]
    p = Image.fromarray(parsing, mode="L").convert("P")
    return Image.fromarray(photo), p


def garment_image(size_wh: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    w, h = size_wh
    image = np.full((h, w, 3), 255, np.uint8)
    image[h // 5 : 4 * h // 5, w // 4 : 3 * w // 4] = color
    return Image.fromarray(image)


@pytest.fixture()
def viton_hd(tmp_path) -> Path:
    root = tmp_path / "VITON-HD"
    for split, names in (("train", ["00000_00", "00001_00"]), ("test", ["00891_00", "01430_00"])):
        for sub in ("image", "cloth", "cloth-mask", "image-parse-v3", "openpose_json"):
            (root / split / sub).mkdir(parents=True)
        for name in names:
            photo, parsing = draw_person((192, 256), {"skin": 13, "top": 5, "bottom": 9})
            photo.save(root / split / "image" / f"{name}.jpg", quality=95)
            parsing.save(root / split / "image-parse-v3" / f"{name}.png")
            garment_image((192, 256), TOP).save(root / split / "cloth" / f"{name}.jpg", quality=95)
        pairs = [f"{a}.jpg {a}.jpg" for a in names] if split == "train" else [f"{names[0]}.jpg {names[1]}.jpg"]
        (root / f"{split}_pairs.txt").write_text("\n".join(pairs) + "\n")
    return root


@pytest.fixture()
def dresscode(tmp_path) -> Path:
    root = tmp_path / "DressCode"
    for category in ("upper_body", "lower_body", "dresses"):
        for sub in ("images", "label_maps", "keypoints", "skeletons", "dense"):
            (root / category / sub).mkdir(parents=True)
        for pid in ("013563", "013564"):
            photo, parsing = draw_person(
                (192, 256), {"skin": 11, "top": 4, "bottom": 6 if category != "dresses" else 7}
            )
            photo.save(root / category / "images" / f"{pid}_0.jpg", quality=95)
            parsing.save(root / category / "label_maps" / f"{pid}_4.png")
            color = BOTTOM if category == "lower_body" else TOP
            garment_image((192, 256), color).save(root / category / "images" / f"{pid}_1.jpg", quality=95)
        (root / category / "train_pairs.txt").write_text("013563_0.jpg 013563_1.jpg\n013564_0.jpg 013564_1.jpg\n")
        (root / category / "test_pairs_paired.txt").write_text("013563_0.jpg 013563_1.jpg\n")
        (root / category / "test_pairs_unpaired.txt").write_text("013563_0.jpg 013564_1.jpg\n")
    return root


@pytest.fixture()
def deepfashion(tmp_path) -> Path:
    root = tmp_path / "DeepFashion-MultiModal"
    (root / "images").mkdir(parents=True)
    (root / "segm").mkdir()
    (root / "keypoints").mkdir()
    names = [
        "MEN-Denim-id_00000080-01_1_front",
        "MEN-Denim-id_00000080-01_7_additional",
        "WOMEN-Blouses_Shirts-id_00000001-02_1_front",
        "WOMEN-Blouses_Shirts-id_00000001-02_2_side",
        "WOMEN-Blouses_Shirts-id_00000001-02_4_full",
    ]
    for name in names:
        photo, parsing = draw_person((375, 550), {"skin": 15, "top": 1, "bottom": 5})  # the dataset's 750x1101 aspect
        photo.save(root / "images" / f"{name}.jpg", quality=95)
        parsing.save(root / "segm" / f"{name}_segm.png")
    (root / "keypoints" / "keypoints_loc.txt").write_text("")
    return root
