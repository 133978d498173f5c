"""Metrics on analytic cases, evaluation cases from a sample, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from omfa.evaluate import (Case, baselines, cases_from_sample, colour_error, evaluate, psnr, spread_cases, ssim)

HW = (32, 24)


def test_psnr_of_a_known_error_and_masked():
    a = np.zeros((*HW, 3), np.uint8)
    b = a.copy()
    b[:16] = 10  # MSE 100 on the top half, 0 below
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 50))
    top = np.zeros(HW, bool)
    top[:16] = True
    assert psnr(a, b, top) == pytest.approx(10 * np.log10(255**2 / 100))
    assert psnr(a, a) > 90
    assert colour_error(a, b, top) == pytest.approx(np.sqrt(3) * 10)


def test_ssim_is_one_for_identical_and_lower_for_noise():
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 200, HW[1])
    a = np.broadcast_to(ramp[None, :, None], (*HW, 3)).astype(np.uint8)
    noisy = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, noisy) < 0.9


def _sample(replaced: str) -> dict:
    rng = np.random.default_rng(1)
    image = lambda: rng.integers(0, 256, (*HW, 3), dtype=np.uint8)  # noqa: E731
    labels = np.zeros(HW, np.uint8)
    labels[4:16, 8:16] = 3
    labels[16:28, 8:16] = 4
    mask = np.zeros(HW, bool)
    mask[8:24, 4:20] = True
    keys = ["reference", "person", "person_same", "pose", "upper_a", "lower_a", "upper_b", "lower_b"]
    return ({k: image() for k in keys} | {f"labels_{k}": labels for k in ("reference", "person", "person_same")}
            | {f"mask_{s}_{o}": mask for s in ("upper", "lower") for o in "ab"} | {"meta": {"replaced": replaced}})


def test_cases_take_the_right_inputs_and_truth():
    sample = _sample("lower")
    cases = cases_from_sample(sample, ["try_on", "try_off", "multiview"])
    assert [c.task for c in cases] == ["try_on_lower", "outfit", "try_off_upper", "try_off_lower", "multiview"]
    on = cases[0]
    assert set(on.inputs) == {"reference", "pose", "lower"} and on.inputs["lower"] is sample["lower_b"]
    assert on.truth is sample["person"] and on.garment.sum() == 12 * 8
    off = cases[2]
    assert off.truth is sample["upper_a"] and off.region.sum() == 16 * 16
    assert cases[-1].truth is sample["person_same"]


def test_baselines_and_table():
    cases = cases_from_sample(_sample("upper"), ["try_on", "try_off"])
    means = {"upper": np.full((*HW, 3), 200, np.uint8), "lower": np.full((*HW, 3), 100, np.uint8),
             "upper_silhouette": np.ones(HW, bool), "lower_silhouette": np.ones(HW, bool)}
    table = evaluate({"copy": baselines(means)["copy-portrait"], "truth": lambda c: c.truth,
                      "mean": baselines(means)["mean-garment"]}, cases)
    assert table["try_on"]["truth"]["psnr"] > 90 and table["try_on"]["copy"]["psnr"] < 20
    assert "mean" not in table["try_on"] and table["try_off"]["mean"]["n"] == 2  # try-off only


def test_spread_cases_alternates_families():
    cases = []
    for r in ("upper", "lower", "both", "upper"):
        cases += cases_from_sample(_sample(r), ["try_on", "try_off", "multiview"])
    picked = spread_cases(cases, 6)
    assert len(picked) == 6
    family = {"try_on_upper": "on", "try_on_lower": "on", "outfit": "on", "try_off_upper": "off",
              "try_off_lower": "off", "multiview": "mv"}
    assert {family[c.task] for c in picked[:3]} == {"on", "off", "mv"}
    assert all(isinstance(c, Case) for c in picked)
