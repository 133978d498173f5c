"""The cache benchmark runs and reports agreeing outputs (timings are reported, never asserted)."""

from __future__ import annotations

import json

from benchmarks.bench import bench_cache, run


def test_bench_cache_reports_every_field_and_exact_outputs():
    result = bench_cache(None, "tiny", steps=3, repeats=1, seed=0, size_hw=(32, 24), precision="fp32")
    for key in ("steps", "uncached_s", "cached_s", "speedup", "max_abs_diff", "first_preview_frac"):
        assert key in result
    assert result["steps"] == 3 and result["model"].startswith("tiny")
    assert result["max_abs_diff"] <= 1e-4
    assert 0 < result["first_preview_frac"] <= 1


def test_bench_cli_prints_one_json_line(capsys):
    assert run(["cache", "--preset", "tiny", "--steps", "2", "--repeats", "1", "--size", "32x24", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == 2


def test_bench_pose_times_every_preset():
    from benchmarks.bench import bench_pose
    from omfa.pose.presets import load_presets

    result = bench_pose(repeats=1)
    assert result["presets"] == len(load_presets()) >= 20
    for key in ("pose_ms", "pose_map_128x96_ms", "pose_map_256_ms", "thumbnail_256_ms"):
        assert result[key] > 0


def test_omfa_bench_runs_from_the_checkout(capsys):
    """`omfa bench` finds benchmarks/ beside the package and dispatches to it."""
    from omfa.cli import main

    assert (
        main(["bench", "cache", "--preset", "tiny", "--steps", "1", "--repeats", "1", "--size", "32x24", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 1


def test_omfa_bench_without_a_checkout_says_what_is_missing(tmp_path, monkeypatch):
    import pytest

    import omfa.cli

    monkeypatch.setattr(omfa.cli, "CHECKOUT", tmp_path)  # an installed package: no benchmarks/ beside it
    with pytest.raises(SystemExit, match="no benchmarks/ folder .* source checkout"):
        omfa.cli.main(["bench", "cache"])
