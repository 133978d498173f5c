"""A data sample -> training examples and evaluation cases: slots, pose kinds, label ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omfa.canvas import SLOT_INDEX, TASKS, Role, image_to_tensor
from omfa.data.examples import (
    FAMILIES,
    LABELS,
    TRY_OFF_SOURCES,
    Case,
    cases_from_sample,
    example_from_sample,
    sample_tasks,
)
from omfa.data.shards import SAMPLE_IMAGES

HW = (32, 24)


def synthetic_sample(replaced: str = "upper", seed: int = 0) -> dict:
    """Every image of the synthetic format (random pixels), label maps and masks."""
    rng = np.random.default_rng(seed)
    sample = {k: rng.integers(0, 256, (*HW, 3), dtype=np.uint8) for k in SAMPLE_IMAGES}
    labels = np.zeros(HW, np.uint8)
    labels[4:16, 6:18], labels[16:28, 6:18] = LABELS["upper"], LABELS["lower"]
    sample |= {f"labels_{k}": labels for k in ("reference", "person", "person_same")}
    sample |= {f"mask_{s}_{o}": labels == LABELS[s] for s in ("upper", "lower") for o in "ab"}
    return sample | {"meta": {"key": "train-000000", "replaced": replaced}}


def test_slot_indices_follow_the_roles():
    for task in TASKS.values():
        targets, conditions = task.slot_indices()
        roles = task.roles()
        assert targets == [i for i, r in enumerate(roles) if r == Role.TARGET]
        assert conditions == [i for i, r in enumerate(roles) if r == Role.CONDITION]
        assert targets == sorted(SLOT_INDEX[s] for s in task.targets)
        assert conditions == sorted(SLOT_INDEX[s] for s in task.conditions)
    assert TASKS["try_off_outfit"].slot_indices() == ([2, 3], [1])


def test_pose_input_is_the_configured_kind():
    sample = synthetic_sample()
    rng = np.random.default_rng(0)
    parts = example_from_sample(sample, "try_on_upper", rng)
    surface = example_from_sample(sample, "try_on_upper", rng, pose_condition="surface")
    assert torch.equal(parts["pose"], image_to_tensor(sample["pose"]))
    assert torch.equal(surface["pose"], image_to_tensor(sample["surface"]))
    assert torch.equal(parts["images"], surface["images"])  # only the pose input differs
    with pytest.raises(ValueError, match="unknown pose condition 'depth'"):
        example_from_sample(sample, "try_on_upper", rng, pose_condition="depth")


def test_real_samples_have_no_surface_maps():
    rng = np.random.default_rng(0)
    real = {
        "reference": synthetic_sample()["reference"],
        "person_same": synthetic_sample()["person"],
        "pose": synthetic_sample()["pose"],
        "tasks": ["multiview"],
        "meta": {"dataset": "DeepFashion-MultiModal"},
    }
    assert torch.equal(example_from_sample(real, "multiview", rng)["pose"], image_to_tensor(real["pose"]))
    with pytest.raises(ValueError, match=r"DeepFashion-MultiModal has no 'surface' map .*\(it has \['pose'\]\)"):
        example_from_sample(real, "multiview", rng, pose_condition="surface")
    # without any pose map, a part-colour model sees a blank one, as before
    blank = example_from_sample({k: v for k, v in real.items() if k != "pose"}, "multiview", rng)
    assert blank["pose"].abs().sum() == 0
    # try-off takes no pose: a surface model trains on real try-off data
    tryoff = {"reference": real["reference"], "upper_a": real["person_same"], "tasks": ["try_off_upper"], "meta": {}}
    assert example_from_sample(tryoff, "try_off_upper", rng, pose_condition="surface")["pose"].abs().sum() == 0


def test_try_off_reads_either_dressed_image_with_its_own_garments():
    sample = synthetic_sample("both")
    seen = set()
    rng = np.random.default_rng(3)
    for _ in range(20):
        ex = example_from_sample(sample, "try_off_upper", rng)
        for source, outfit in TRY_OFF_SOURCES:
            if torch.equal(ex["images"][SLOT_INDEX["reference"]], image_to_tensor(sample[source])):
                assert torch.equal(ex["images"][SLOT_INDEX["upper"]], image_to_tensor(sample[f"upper_{outfit}"]))
                seen.add(source)
    assert seen == {"reference", "person"}


def test_cases_carry_every_pose_kind_and_feed_each_model_its_own():
    sample = synthetic_sample("lower")
    cases = cases_from_sample(sample, list(FAMILIES))
    assert {c.task for c in cases} == set(sample_tasks(sample)) - {"try_off_outfit"}
    on = next(c for c in cases if c.task == "try_on_lower")
    assert on.inputs["pose"] is sample["pose"]  # the baselines' part-colour map
    assert on.model_inputs("parts")["pose"] is sample["pose"]
    assert on.model_inputs("surface")["pose"] is sample["surface"]
    assert on.model_inputs("surface")["lower"] is sample["lower_b"]
    off = next(c for c in cases if c.task == "try_off_upper")
    assert "pose" not in off.model_inputs("surface")
    # a case built without pose maps (real data) serves part-colour models only
    bare = Case(
        "try_on_upper",
        {"reference": sample["reference"], "pose": sample["pose"]},
        "person",
        sample["person"],
        on.region,
        on.garment,
        None,
    )
    assert bare.model_inputs("parts")["pose"] is sample["pose"]
    with pytest.raises(ValueError, match="no 'surface' pose map"):
        bare.model_inputs("surface")
