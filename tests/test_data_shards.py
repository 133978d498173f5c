"""Tar shards: a tiny dataset generated in seconds, read back, byte-identical per seed, resumable."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from omfa.data.garments import GarmentSpec
from omfa.data.generate import generate
from omfa.data.people import Identity
from omfa.data.shards import SAMPLE_IMAGES, SAMPLE_LABELS, SAMPLE_MASKS, DatasetError, ShardDataset
from omfa.data.synthetic import GROUP_SIZE, SynthConfig, SynthConfigError, spec_digest, split_presets
from omfa.pose.presets import load_presets

TINY = SynthConfig(seed=3, counts={"train": 6, "val": 2, "test": 8})


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "tiny"
    lines = []
    report = generate(root, TINY, workers=1, shard_size=4, log=lines.append)
    assert report.samples == 16 and report.samples_per_second > 0
    assert "samples/s" in lines[-1]
    return root


def test_layout_and_reading_back(tiny):
    assert sorted(p.name for p in (tiny / "train").iterdir()) == [
        "shard-000000.json",
        "shard-000000.tar",
        "shard-000001.json",
        "shard-000001.tar",
    ]
    train = ShardDataset(tiny, "train")
    assert len(train) == 6 and train.keys() == [f"train-{i:06d}" for i in range(6)]
    sample = train[5]
    for key in SAMPLE_IMAGES:
        assert sample[key].shape == (128, 96, 3) and sample[key].dtype == np.uint8
    for key in SAMPLE_LABELS:
        assert sample[key].dtype == np.uint8 and sample[key].max() <= 5
    for key in SAMPLE_MASKS:
        assert sample[key].dtype == bool and sample[key].any()
    assert sample["meta"]["key"] == "train-000005" and sample["meta"]["split"] == "train"
    assert np.array_equal(train[-1]["person"], sample["person"])
    with pytest.raises(IndexError, match="out of range"):
        train[6]


def test_test_split_groups_and_disjointness(tiny):
    test, train = ShardDataset(tiny, "test"), ShardDataset(tiny, "train")
    assert test.groups() == [0] * GROUP_SIZE
    metas = [test[i]["meta"] for i in range(len(test))]
    assert len({m["identity_id"] for m in metas}) == 1 and len({(m["preset"], m["yaw"]) for m in metas}) == GROUP_SIZE
    train_metas = [train[i]["meta"] for i in range(len(train))]

    def contents(ms):
        garments = {spec_digest(GarmentSpec.from_json(g)) for m in ms for g in m["garments"].values()}
        people = {spec_digest(Identity.from_json(m["identity"])) for m in ms}
        poses = {m[k] for m in ms for k in ("preset", "preset_ref")}
        return garments, people, poses

    for a, b in zip(contents(metas), contents(train_metas), strict=True):
        assert not (a & b)
    manifest = json.loads((tiny / "dataset.json").read_text())
    assert manifest["presets"] == {k: list(v) for k, v in split_presets(list(load_presets()), TINY.seed).items()}


def test_same_seed_same_bytes_and_resume(tiny, tmp_path):
    again = tmp_path / "again"
    generate(again, TINY, workers=1, shard_size=4, log=lambda _: None)
    assert digest_tree(again) == digest_tree(tiny)
    # Interrupted run: a shard with only a temporary tar and no index is redone from scratch.
    (again / "train" / "shard-000001.json").unlink()
    (again / "train" / "shard-000001.tar").rename(again / "train" / "shard-000001.tar.tmp")
    lines = []
    report = generate(again, TINY, workers=1, shard_size=4, log=lines.append)
    assert report.samples == 2 and report.skipped_shards == 4
    assert digest_tree(again) == digest_tree(tiny)
    with pytest.raises(DatasetError, match=r"other settings \(config"):
        generate(again, SynthConfig(seed=4, counts=TINY.counts), workers=1, shard_size=4, log=lambda _: None)


def test_two_workers_write_the_same_bytes(tiny, tmp_path):
    parallel = tmp_path / "parallel"
    generate(parallel, TINY, workers=2, shard_size=4, log=lambda _: None)
    assert digest_tree(parallel) == digest_tree(tiny)


def test_refresh_picks_up_shards_written_later(tiny, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(tiny, partial)
    moved = {name: (partial / "train" / name).read_bytes() for name in ("shard-000001.tar", "shard-000001.json")}
    for name in moved:
        (partial / "train" / name).unlink()
    train = ShardDataset(partial, "train")
    assert len(train) == 4 and train.refresh() == 0
    for name, data in moved.items():
        (partial / "train" / name).write_bytes(data)
    assert train.refresh() == 2 and len(train) == 6 and train[5]["meta"]["key"] == "train-000005"


def test_reading_errors_name_the_path(tiny, tmp_path):
    with pytest.raises(DatasetError, match="dataset.json does not exist"):
        ShardDataset(tmp_path, "train")
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    (copy / "val" / "shard-000000.tar").unlink()
    with pytest.raises(DatasetError, match="shard-000000.tar, which is missing"):
        ShardDataset(copy, "val")
    with pytest.raises(DatasetError, match="split 'dev'"):
        ShardDataset(copy, "dev")


def test_the_image_size_is_recorded_and_older_datasets_are_128x96(tiny, tmp_path):
    manifest = json.loads((tiny / "dataset.json").read_text())
    assert manifest["config"]["size_hw"] == [128, 96] and ShardDataset(tiny, "val").size_hw == (128, 96)
    # A format-2 dataset written before the size was recorded: read as 128x96, and it resumes.
    old = tmp_path / "old"
    shutil.copytree(tiny, old)
    del manifest["config"]["size_hw"]
    (old / "dataset.json").write_text(json.dumps(manifest, sort_keys=True, indent=1))
    before = (old / "dataset.json").read_bytes()
    assert ShardDataset(old, "train").size_hw == (128, 96)
    (old / "train" / "shard-000001.json").unlink()
    report = generate(old, TINY, workers=1, shard_size=4, log=lambda _: None)
    assert report.samples == 2 and (old / "dataset.json").read_bytes() == before
    assert digest_tree(old / "train") == digest_tree(tiny / "train")
    with pytest.raises(DatasetError, match=r"other settings \(config"):
        generate(
            old,
            SynthConfig(seed=TINY.seed, counts=TINY.counts, size_hw=(64, 48)),
            workers=1,
            shard_size=4,
            log=lambda _: None,
        )


def test_sizes_must_tile_into_patches():
    assert SynthConfig(size_hw=[64, 48]).size_hw == (64, 48)
    with pytest.raises(SynthConfigError, match="image size 60x48 px is not possible; use HEIGHTxWIDTH"):
        SynthConfig(size_hw=(60, 48))
    with pytest.raises(SynthConfigError, match="multiple of 8 from 16"):
        SynthConfig(size_hw=(8, 8))


def test_cli_contact_sheet(tmp_path):
    # Here, not beside a long-lived FittingRoom: closing any pyrender EGL renderer
    # terminates the EGL display that every renderer of the process shares.
    from PIL import Image

    from omfa.data.cli import main

    path = tmp_path / "sheet.png"
    assert (
        main(
            ["synth", "--sheet", str(path), "--rows", "2", "--train", "16", "--val", "0", "--test", "0", "--seed", "2"]
        )
        == 0
    )
    sheet = np.asarray(Image.open(path))
    # Two rows of 128 px tiles at 2x with 4 px gaps, under an 18 px title bar; ten columns.
    assert sheet.shape[0] == 18 + 2 * (128 + 4) * 2 and sheet.shape[1] == 70 + 10 * (96 + 4) * 2
    assert (sheet[18:, 70:] < 250).any(axis=2).mean() > 0.05  # not blank: people, pose maps, garments
    assert main(["synth", "--out", str(tmp_path / "bad"), "--test", "12"]) == 2
    assert main(["synth", "--out", str(tmp_path / "bad"), "--size", "100x75"]) == 2
    with pytest.raises(SystemExit):  # argparse: not HEIGHTxWIDTH
        main(["synth", "--out", str(tmp_path / "bad"), "--size", "64"])
