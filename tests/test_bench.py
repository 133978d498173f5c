"""The cache benchmark runs and reports agreeing outputs (timings are reported, never asserted)."""

from __future__ import annotations

import json

from omfa.bench import bench_cache, main


def test_bench_cache_reports_every_field_and_exact_outputs(monkeypatch):
    import omfa.bench

    monkeypatch.setattr(omfa.bench, "CANVAS_HW", (32, 24))
    result = bench_cache(None, "tiny", steps=3, repeats=1, seed=0)
    for key in ("steps", "uncached_s", "cached_s", "speedup", "max_abs_diff", "first_preview_frac"):
        assert key in result
    assert result["steps"] == 3 and result["model"].startswith("tiny")
    assert result["max_abs_diff"] <= 1e-4
    assert 0 < result["first_preview_frac"] <= 1


def test_bench_cli_prints_one_json_line(monkeypatch, capsys):
    import omfa.bench

    monkeypatch.setattr(omfa.bench, "CANVAS_HW", (32, 24))
    assert main(["cache", "--preset", "tiny", "--steps", "2", "--repeats", "1", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == 2


def test_bench_pose_times_every_preset():
    from omfa.bench import bench_pose
    from omfa.pose.presets import load_presets

    result = bench_pose(repeats=1)
    assert result["presets"] == len(load_presets()) >= 20
    for key in ("pose_ms", "pose_map_128x96_ms", "pose_map_256_ms", "thumbnail_256_ms"):
        assert result[key] > 0
