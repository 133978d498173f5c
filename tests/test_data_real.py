"""Real-dataset loaders on small fixture folders in each dataset's exact layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from real_fixtures import BOTTOM, TOP

from omfa.canvas import TASKS
from omfa.data.real import DeepFashionMultiModal, DressCode, RealDatasetError, VitonHD, fit_to_canvas

SIZE_HW = (128, 96)  # the canvas the loaders fit images to


def check_sample(sample: dict) -> None:
    """Keys of the synthetic format, at canvas size, and tasks the model knows."""
    for key, value in sample.items():
        if key in ("meta", "tasks"):
            continue
        assert value.shape[:2] == SIZE_HW and value.dtype == np.uint8, key
    assert all(task in TASKS for task in sample["tasks"])
    for task in sample["tasks"]:
        for slot in TASKS[task].targets + TASKS[task].conditions:
            key = {"person": "person_same" if task == "multiview" else "person"}.get(slot, slot)
            assert key in sample or f"{key}_a" in sample or f"{key}_b" in sample, (task, slot)


def region_label(labels: np.ndarray, fx: float, fy: float) -> int:
    h, w = labels.shape
    return int(labels[int(fy * h), int(fx * w)])


def test_viton_hd_paired_and_unpaired(viton_hd):
    train = VitonHD(viton_hd, "train", size_hw=SIZE_HW)
    assert len(train) == 2
    sample = train[1]
    check_sample(sample)
    assert sample["tasks"] == ["try_off_upper"] and sample["meta"]["person"] == "00001_00.jpg"
    labels = sample["labels_reference"]
    assert region_label(labels, 0.5, 0.35) == 3 and region_label(labels, 0.5, 0.8) == 4
    assert region_label(labels, 0.5, 0.1) == 1 and region_label(labels, 0.05, 0.5) == 0
    # The photo is the canvas's 4:3 already: a plain resize keeps the red top where the parsing says.
    top = sample["reference"][labels == 3].astype(int).mean(axis=0)
    assert np.abs(top - TOP).max() < 12
    test = VitonHD(viton_hd, "test", pairs="unpaired", size_hw=SIZE_HW)
    unpaired = test[0]
    check_sample(unpaired)
    assert unpaired["tasks"] == [] and unpaired["meta"]["unpaired_tasks"] == ["try_on_upper"] and "upper_b" in unpaired


def test_dresscode_categories_fill_their_slot(dresscode):
    train = DressCode(dresscode, "train", size_hw=SIZE_HW)
    assert len(train) == 6
    by_category = {train[i]["meta"]["category"]: train[i] for i in range(len(train))}
    for sample in by_category.values():
        check_sample(sample)
    assert by_category["upper_body"]["tasks"] == ["try_off_upper"] and "upper_a" in by_category["upper_body"]
    lower = by_category["lower_body"]
    assert lower["tasks"] == ["try_off_lower"] and np.abs(lower["lower_a"][64, 48].astype(int) - BOTTOM).max() < 12
    dress = by_category["dresses"]
    assert dress["meta"]["dress"] and "upper_a" in dress and region_label(dress["labels_reference"], 0.5, 0.8) == 3
    unpaired = DressCode(dresscode, "test", pairs="unpaired", categories=("lower_body",), size_hw=SIZE_HW)[0]
    assert unpaired["tasks"] == [] and unpaired["meta"]["garment"] == "013564_1.jpg" and "lower_b" in unpaired


def test_deepfashion_pairs_views_of_one_outfit(deepfashion):
    data = DeepFashionMultiModal(deepfashion, size_hw=SIZE_HW)
    assert len(data) == 2 + 6  # ordered pairs within each outfit: 2x1 and 3x2
    outfits = {data[i]["meta"]["outfit"] for i in range(len(data))}
    assert outfits == {"MEN-Denim-id_00000080-01", "WOMEN-Blouses_Shirts-id_00000001-02"}
    sample = data[0]
    check_sample(sample)
    assert sample["tasks"] == ["multiview"] and sample["meta"]["reference"] != sample["meta"]["person"]
    # 375x550 is narrower than 4:3: white bars left and right, label 0 there.
    assert (sample["reference"][:, 0] == 255).all() and (sample["labels_reference"][:, 0] == 0).all()
    assert region_label(sample["labels_person_same"], 0.5, 0.8) == 4
    train = DeepFashionMultiModal(deepfashion, "train", size_hw=SIZE_HW)
    test = DeepFashionMultiModal(deepfashion, "test", size_hw=SIZE_HW)
    assert len(train) + len(test) == len(data)


def test_fit_to_canvas_pads_then_resizes():
    tall = Image.new("RGB", (100, 300), (10, 200, 10))
    out = fit_to_canvas(tall, SIZE_HW)
    assert out.shape == (*SIZE_HW, 3)
    assert (out[:, :20] == 255).all() and (out[:, 40:56] == (10, 200, 10)).all()
    labels = fit_to_canvas(Image.fromarray(np.full((300, 100), 7, np.uint8)), SIZE_HW, labels=True)
    assert set(np.unique(labels)) == {0, 7}


def test_loaders_fit_images_to_the_size_they_are_given(viton_hd):
    sample = VitonHD(viton_hd, "train", size_hw=(64, 48))[0]
    assert sample["reference"].shape == (64, 48, 3) and sample["upper_a"].shape == (64, 48, 3)
    assert sample["labels_reference"].shape == (64, 48)


def test_errors_name_the_path_and_layout(viton_hd, dresscode, deepfashion, tmp_path):
    with pytest.raises(RealDatasetError, match=r"nowhere is not a folder; expected layout: ROOT/\{train,test\}_pairs"):
        VitonHD(tmp_path / "nowhere", size_hw=SIZE_HW)
    (viton_hd / "train_pairs.txt").write_text("00000_00.jpg 00000_00.jpg extra\n")
    with pytest.raises(RealDatasetError, match="train_pairs.txt line 1 has 3 fields"):
        VitonHD(viton_hd, "train", size_hw=SIZE_HW)
    (viton_hd / "train_pairs.txt").write_text("00009_00.jpg 00009_00.jpg\n")
    with pytest.raises(RealDatasetError, match=r"image/00009_00.jpg is missing"):
        VitonHD(viton_hd, "train", size_hw=SIZE_HW)[0]
    (dresscode / "dresses" / "train_pairs.txt").unlink()
    with pytest.raises(RealDatasetError, match=r"pair list .*dresses/train_pairs.txt is missing"):
        DressCode(dresscode, "train", size_hw=SIZE_HW)
    with pytest.raises(RealDatasetError, match="unpaired lists for the test split only"):
        DressCode(dresscode, "train", pairs="unpaired", size_hw=SIZE_HW)
    Image.new("RGB", (8, 8)).save(deepfashion / "images" / "holiday.jpg")
    with pytest.raises(RealDatasetError, match="holiday.jpg does not follow the naming"):
        DeepFashionMultiModal(deepfashion, size_hw=SIZE_HW)
    (deepfashion / "images" / "MEN-Denim-id_00000080-01_1_front.jpg").write_bytes(b"not a jpeg")
    (deepfashion / "images" / "holiday.jpg").unlink()
    with pytest.raises(RealDatasetError, match="is not a readable image"):
        DeepFashionMultiModal(deepfashion, size_hw=SIZE_HW)[0]


@pytest.mark.slow
def test_pose_from_the_estimator_on_a_real_photograph(viton_hd):
    """The astronaut photo (scikit-image) as a VITON-HD person: the estimator fills `pose_ref`."""
    from skimage import data

    from omfa.data.real import estimator_pose_fn
    from omfa.pose.render import PALETTE

    astronaut = Image.fromarray(data.astronaut()).resize((384, 512))
    astronaut.save(viton_hd / "train" / "image" / "00000_00.jpg", quality=95)
    sample = VitonHD(viton_hd, "train", pose_fn=estimator_pose_fn(SIZE_HW), size_hw=SIZE_HW)[0]
    pose = sample["pose_ref"]
    assert pose.shape == (*SIZE_HW, 3)
    body = pose.any(axis=2)
    assert 0.03 < body.mean() < 0.5
    colours = {tuple(c) for c in pose[body]}
    assert colours <= {tuple(c) for c in PALETTE}
