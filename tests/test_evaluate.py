"""Metrics on analytic cases, evaluation cases from a sample, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from omfa.data.examples import Case, cases_from_sample
from omfa.training.evaluate import baselines, evaluate, format_table, spread_cases
from omfa.training.metrics import colour_error, garment_mask, pattern_fidelity, psnr, silhouette_iou, ssim

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


def _striped(hw=HW, period: int = 4, shift: int = 0) -> np.ndarray:
    """Vertical black/white-ish stripes (a print the high-pass keeps)."""
    cols = (np.arange(hw[1]) + shift) // (period // 2) % 2
    row = np.where(cols[:, None] == 1, [200, 40, 40], [250, 230, 90])
    return np.broadcast_to(row[None], (*hw, 3)).astype(np.uint8)


def test_pattern_fidelity_is_the_high_pass_correlation():
    truth = _striped()
    inside = np.zeros(HW, bool)
    inside[6:26, 4:20] = True
    assert pattern_fidelity(truth, truth, inside) == pytest.approx(1.0)
    # the same print in other colours still correlates fully (a linear map of the luminance)
    brighter = np.clip(truth.astype(int) // 2 + 100, 0, 255).astype(np.uint8)
    assert pattern_fidelity(brighter, truth, inside) == pytest.approx(1.0)
    # the print shifted by half a period is the inverted print
    assert pattern_fidelity(_striped(shift=2), truth, inside) == pytest.approx(-1.0, abs=0.02)
    flat = np.full((*HW, 3), 128, np.uint8)
    assert pattern_fidelity(flat, truth, inside) == 0.0  # no print reproduced
    assert np.isnan(pattern_fidelity(truth, flat, inside))  # a plain garment: nothing to measure
    assert np.isnan(pattern_fidelity(truth, truth, np.zeros(HW, bool)))
    # a garment's outline is not its print: a flat silhouette on white scores 0 against a striped one
    shop, silhouette = np.full((*HW, 3), 255, np.uint8), np.full((*HW, 3), 255, np.uint8)
    shop[inside], silhouette[inside] = truth[inside], (200, 40, 40)
    assert pattern_fidelity(silhouette, shop, inside) == 0.0 and pattern_fidelity(shop, shop, inside) == pytest.approx(
        1.0
    )


def test_silhouette_iou_of_shop_images():
    shop = np.full((*HW, 3), 255, np.uint8)
    mask = np.zeros(HW, bool)
    mask[8:24, 4:16] = True  # 16 x 12 garment
    shop[mask] = (30, 60, 190)
    assert np.array_equal(garment_mask(shop), mask) and silhouette_iou(shop, mask) == 1.0
    half = shop.copy()
    half[16:24] = 255  # only the top half of the garment
    assert silhouette_iou(half, mask) == pytest.approx(0.5)
    shifted = np.roll(shop, 6, axis=1)  # half the width off: 16x6 overlap of a 16x18 union
    assert silhouette_iou(shifted, mask) == pytest.approx(1 / 3)
    nearly_white = np.full((*HW, 3), 246, np.uint8)  # within 10 levels of white: background
    assert silhouette_iou(nearly_white, mask) == 0.0
    assert np.isnan(silhouette_iou(np.full((*HW, 3), 255, np.uint8), np.zeros(HW, bool)))


def _sample(replaced: str) -> dict:
    rng = np.random.default_rng(1)
    image = lambda: rng.integers(0, 256, (*HW, 3), dtype=np.uint8)  # noqa: E731
    labels = np.zeros(HW, np.uint8)
    labels[4:16, 8:16] = 3
    labels[16:28, 8:16] = 4
    mask = np.zeros(HW, bool)
    mask[8:24, 4:20] = True
    keys = ["reference", "person", "person_same", "pose", "upper_a", "lower_a", "upper_b", "lower_b"]
    return (
        {k: image() for k in keys}
        | {f"labels_{k}": labels for k in ("reference", "person", "person_same")}
        | {f"mask_{s}_{o}": mask for s in ("upper", "lower") for o in "ab"}
        | {"meta": {"replaced": replaced}}
    )


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
    means = {
        "upper": np.full((*HW, 3), 200, np.uint8),
        "lower": np.full((*HW, 3), 100, np.uint8),
        "upper_silhouette": np.ones(HW, bool),
        "lower_silhouette": np.ones(HW, bool),
    }
    table = evaluate(
        {
            "copy": baselines(means)["copy-portrait"],
            "truth": lambda c: c.truth,
            "mean": baselines(means)["mean-garment"],
        },
        cases,
    )
    assert table["try_on"]["truth"]["psnr"] > 90 and table["try_on"]["copy"]["psnr"] < 20
    assert "mean" not in table["try_on"] and table["try_off"]["mean"]["n"] == 2  # try-off only
    # the pattern and silhouette metrics: exact for the truth; IoU only scores try-off
    assert table["try_on"]["truth"]["pattern"] == pytest.approx(1.0) and "iou" not in table["try_on"]["truth"]
    assert table["try_off"]["truth"]["pattern"] == pytest.approx(1.0)
    assert table["try_off"]["mean"]["pattern"] == 0.0  # a flat mean garment has no print
    assert "iou" in table["try_off"]["truth"] and table["try_off"]["mean"]["iou"] == pytest.approx(
        16 * 16 / (32 * 24), abs=1e-4
    )
    assert "| pattern | iou |" in format_table(table)


def test_spread_cases_alternates_families():
    cases = []
    for r in ("upper", "lower", "both", "upper"):
        cases += cases_from_sample(_sample(r), ["try_on", "try_off", "multiview"])
    picked = spread_cases(cases, 6)
    assert len(picked) == 6
    family = {
        "try_on_upper": "on",
        "try_on_lower": "on",
        "outfit": "on",
        "try_off_upper": "off",
        "try_off_lower": "off",
        "multiview": "mv",
    }
    assert {family[c.task] for c in picked[:3]} == {"on", "off", "mv"}
    assert all(isinstance(c, Case) for c in picked)
