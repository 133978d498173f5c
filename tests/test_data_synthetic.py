"""Planning synthetic samples: splits, determinism, multi-view groups, pose perturbation (no OpenGL)."""

from __future__ import annotations

import numpy as np
import pytest

from omfa.data.synthetic import (
    GROUP_SIZE,
    TRAIN_ANCHORS,
    SynthConfig,
    SynthConfigError,
    perturbed_pose,
    sample_spec,
    spec_digest,
    split_presets,
)
from omfa.pose.presets import load_presets

CONFIG = SynthConfig(seed=5, counts={"train": 400, "val": 40, "test": 80})


@pytest.fixture(scope="module")
def presets():
    return load_presets()


@pytest.fixture(scope="module")
def partition(presets):
    return split_presets(list(presets), CONFIG.seed)


@pytest.fixture(scope="module")
def specs(presets, partition):
    return {
        split: [sample_spec(CONFIG, split, i, presets, partition) for i in range(n)]
        for split, n in CONFIG.counts.items()
    }


def test_presets_are_partitioned(presets, partition):
    sets = {split: set(names) for split, names in partition.items()}
    assert sets["train"] | sets["val"] | sets["test"] == set(presets)
    assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["val"]) and not (sets["val"] & sets["test"])
    assert len(sets["test"]) >= 2 and len(sets["val"]) >= 1
    assert set(TRAIN_ANCHORS) & set(presets) <= sets["train"]
    assert split_presets(list(presets), CONFIG.seed) == partition  # deterministic
    assert split_presets(list(presets), CONFIG.seed + 1) != partition  # and seed-dependent


def test_splits_share_no_garment_identity_or_pose(specs, partition):
    def contents(split):
        garments, people, presets = set(), set(), set()
        for spec in specs[split]:
            for garment in (*spec.outfit_a, *spec.outfit_b):
                garments.add(spec_digest(garment))
            people.add(spec_digest(spec.identity))
            presets |= {spec.view.preset, spec.view_ref.preset}
        return garments, people, presets

    train, test, val = contents("train"), contents("test"), contents("val")
    for other in (test, val):
        for a, b in zip(train, other, strict=True):
            assert not (a & b)
    assert train[2] <= set(partition["train"]) and test[2] <= set(partition["test"])


def test_same_seed_same_plan(presets, partition, specs):
    again = [sample_spec(CONFIG, "train", i, presets, partition) for i in (0, 17, 399)]
    assert [s.meta() for s in again] == [specs["train"][i].meta() for i in (0, 17, 399)]
    other = SynthConfig(seed=6, counts=CONFIG.counts)
    assert sample_spec(other, "train", 17, presets, split_presets(list(presets), 6)).meta() != specs["train"][17].meta()


def test_outfit_b_replaces_what_it_says(specs):
    seen = set()
    for spec in specs["train"]:
        (ua, la), (ub, lb) = spec.outfit_a, spec.outfit_b
        seen.add(spec.replaced)
        assert (ub != ua) == (spec.replaced in ("upper", "both"))
        assert (lb != la) == (spec.replaced in ("lower", "both"))
    assert seen == {"upper", "lower", "both"}


def test_test_split_comes_in_multiview_groups(specs, presets):
    test = specs["test"]
    assert len(test) % GROUP_SIZE == 0
    for start in range(0, len(test), GROUP_SIZE):
        group = test[start : start + GROUP_SIZE]
        assert {s.group for s in group} == {start // GROUP_SIZE}
        assert len({(s.identity, s.outfit_a, s.outfit_b, s.view_ref) for s in group}) == 1
        views = {(s.view.preset, s.view.perturbation_seed, s.view.yaw_deg % 360) for s in group}
        assert len(views) == GROUP_SIZE
        # A gallery around the body: camera yaws 45 degrees apart (from each preset's own default).
        yaws = [s.view.yaw_deg - presets[s.view.preset].yaw_deg for s in group]
        assert yaws == pytest.approx([45.0 * k for k in range(GROUP_SIZE)], abs=0.01)
    assert all(s.group is None for s in specs["train"])


def test_perturbation_stays_near_the_preset_and_within_limits(presets):
    preset = presets["walking"]
    poses = [perturbed_pose(preset, seed) for seed in range(50)]
    deltas = np.array([p.body_pose - preset.pose.body_pose for p in poses])
    assert 0.02 < np.abs(deltas).mean() < 0.2 and np.abs(deltas).max() <= 0.25 + 1e-9
    knees = np.array([p.body_pose[3:5, 0] for p in poses])
    assert (knees >= np.minimum(0.0, preset.pose.body_pose[3:5, 0])).all()
    assert perturbed_pose(preset, 7).allclose(perturbed_pose(preset, 7))


def test_config_errors(presets, partition):
    with pytest.raises(SynthConfigError, match="multiple of 8"):
        SynthConfig(counts={"train": 1, "val": 1, "test": 12})
    with pytest.raises(SynthConfigError, match="split 'dev'"):
        SynthConfig(counts={"dev": 3})
    with pytest.raises(SynthConfigError, match="train sample 400 does not exist"):
        sample_spec(CONFIG, "train", 400, presets, partition)


def test_a_fresh_test_set_keeps_the_training_partition(presets, partition, specs):
    """--seed NEW --partition-seed S: new garments, people and perturbations; the test poses stay unseen."""
    fresh = SynthConfig(seed=9001, counts={"train": 0, "val": 0, "test": 80}, partition_seed=CONFIG.seed)
    assert fresh.preset_seed == CONFIG.seed and CONFIG.preset_seed == CONFIG.seed
    assert split_presets(list(presets), fresh.preset_seed) == partition
    fresh_specs = [sample_spec(fresh, "test", i, presets, partition) for i in range(80)]
    assert {s.view.preset for s in fresh_specs} <= set(partition["test"])
    garments = lambda ss: {spec_digest(g) for s in ss for g in (*s.outfit_a, *s.outfit_b)}
    people = lambda ss: {spec_digest(s.identity) for s in ss}
    seen = specs["train"] + specs["test"]
    assert not garments(fresh_specs) & garments(seen) and not people(fresh_specs) & people(seen)
    assert fresh.to_json()["partition_seed"] == CONFIG.seed and "partition_seed" not in CONFIG.to_json()
