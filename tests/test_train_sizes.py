"""The canvas size and the pose condition come from the data and the config, end to end:
`omfa synth --size 64x48`, then `omfa train` on it with surface pose maps and min-SNR weighting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omfa.data.shards import ShardDataset


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from omfa.data.cli import main

    root = tmp_path_factory.mktemp("synth64") / "data"
    args = [
        "synth",
        "--out",
        str(root),
        "--size",
        "64x48",
        "--train",
        "4",
        "--val",
        "0",
        "--test",
        "0",
        "--seed",
        "3",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    return root


def test_a_dataset_at_another_size(small_dataset):
    train = ShardDataset(small_dataset, "train")
    assert train.size_hw == (64, 48) and len(train) == 4
    assert json.loads((small_dataset / "dataset.json").read_text())["config"]["size_hw"] == [64, 48]
    sample = train[0]
    for key in ("reference", "person", "pose", "surface", "upper_a"):
        assert sample[key].shape == (64, 48, 3), key
    assert sample["labels_person"].shape == (64, 48) and sample["mask_upper_a"].shape == (64, 48)
    assert sample["person"].min() < 200 and sample["surface"].any()  # a person is drawn, not a blank canvas


def test_training_takes_the_canvas_from_the_data(small_dataset, tmp_path):
    from omfa.pipeline import OMFAPipeline
    from omfa.training.cli import main
    from omfa.training.loop import CONFIGS, train

    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(small_dataset),
        "--out",
        str(out),
        "--config",
        "tiny-test",
        "--steps",
        "5",
        "--pose-condition",
        "surface",
        "--loss-weighting",
        "min_snr",
        "--timestep-sampling",
        "high_noise",
        "--task-weights",
        "try_off_upper=3,multiview=0.5",
        "--warmup",
        "2",
    ]
    assert main(args) == 0
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5 and state["size_hw"] == [64, 48]
    assert state["config"]["pose_condition"] == "surface" and state["config"]["loss_weighting"] == "min_snr"
    assert state["config"]["timestep_sampling"] == "high_noise" and state["config"]["warmup"] == 2
    weights = state["config"]["task_weights"]
    assert weights["try_off_upper"] == 3 and weights["multiview"] == 0.5 and weights["try_on_upper"] == 1.5
    pipe = OMFAPipeline.load(out / "pipeline", device="cpu")
    assert tuple(pipe.transformer.config.sample_size) == (64, 48) and pipe.canvas_hw == (64, 48)
    assert pipe.transformer.config.pose_condition == "surface"
    history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(v) for h in history for v in h["loss"].values())
    # resuming with another pose condition would train the model on maps it never saw
    from dataclasses import replace

    with pytest.raises(ValueError, match="trained with pose condition 'surface', not 'parts'"):
        train(replace(CONFIGS["tiny-test"], steps=6), ShardDataset(small_dataset, "train"), out, log=lambda *_: None)


def test_train_on_vae_latents_from_the_command_line(small_dataset, tmp_path):
    """`omfa train --vae DIR --preview-vae DIR`: a latent model of the 64x48 data, its VAE and tiny preview
    decoder in the pipeline folder, streaming previews at the data's pixel size."""
    from engine_helpers import tiny_kl, tiny_taesd

    from omfa.pipeline import OMFAPipeline
    from omfa.training.cli import main
    from omfa.training.evaluate import evaluate_models

    tiny_kl().save_pretrained(tmp_path / "kl")
    tiny_taesd().save_pretrained(tmp_path / "taesd")
    out = tmp_path / "run"
    flags = ["--config", "tiny-test", "--steps", "2", "--pose-condition", "surface"]
    vaes = ["--vae", str(tmp_path / "kl"), "--preview-vae", str(tmp_path / "taesd")]
    assert main(["train", "--data", str(small_dataset), "--out", str(out), *flags, *vaes]) == 0
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["size_hw"] == [32, 24] and state["config"]["vae"] == str(tmp_path / "kl")
    assert len(list((out / "latents").glob("*/chunk-*.safetensors"))) == 1  # 4 samples, one chunk
    pipe = OMFAPipeline.load(out / "pipeline", device="cpu")
    assert type(pipe.vae).__name__ == "AutoencoderKL" and type(pipe.preview_decoder).__name__ == "AutoencoderTiny"
    assert pipe.transformer.config.in_channels == pipe.transformer.config.pose_channels == 4
    sample = ShardDataset(small_dataset, "train")[0]
    inputs = {"reference": sample["reference"], "upper": sample["upper_b"], "pose": sample["surface"]}
    previews = list(pipe.stream("try_on_upper", **inputs, num_inference_steps=3))
    assert [p.images["person"].size for p in previews] == [(48, 64)] * 3  # the tiny decoder at every step
    # `omfa eval` scores it at the data's pixel size, with a preview of every step for the convergence curve
    result = evaluate_models(
        [f"latent={out / 'pipeline'}"], small_dataset, split="train", steps=5, limit=1, with_baselines=False
    )
    assert "pattern" in result["table"]["try_on"]["latent"]
    assert len(result["preview_psnr_by_step"]["latent"]) == 4  # steps 1-4 against the final image


def test_train_flags_are_checked(small_dataset, tmp_path, capsys):
    from omfa.training.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--data", str(small_dataset), "--out", str(tmp_path), "--preview-vae", str(tmp_path)])
    assert "preview_vae decodes latents; it needs a vae" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main(["train", "--data", str(small_dataset), "--out", str(tmp_path), "--pose-condition", "depth"])
    with pytest.raises(SystemExit):
        main(["train", "--data", str(small_dataset), "--out", str(tmp_path), "--tasks", "try_on_upper,nope"])
    assert "unknown task 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(small_dataset), "--out", str(tmp_path), "--task-weights", "try_off_upper=x"])
    assert "'try_off_upper=x' is not task=number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(small_dataset), "--out", str(tmp_path), "--task-weights", "tryoff=2"])
    assert "unknown task 'tryoff'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(tmp_path), "--data", str(small_dataset), "--denoise-at", "0.5,2"])
    assert "--denoise-at times must lie in [0, 1]; got '0.5,2'" in capsys.readouterr().err


def test_evaluation_at_the_data_size(small_dataset, tmp_path):
    from omfa.training.cli import main as training_main
    from omfa.training.evaluate import evaluate_models

    out = tmp_path / "run"
    assert (
        training_main(
            [
                "train",
                "--data",
                str(small_dataset),
                "--out",
                str(out),
                "--config",
                "tiny-test",
                "--steps",
                "1",
                "--pose-condition",
                "surface",
            ]
        )
        == 0
    )
    # the surface model gets surface maps for try-on, the recolour baseline the part colours
    result = evaluate_models(
        [f"surf={out / 'pipeline'}"], small_dataset, split="train", families=("try_on", "try_off"), steps=1, limit=1
    )
    scores = result["table"]["try_off"]
    assert set(scores) == {"copy-portrait", "recolour", "mean-garment", "surf"}
    assert all({"pattern", "iou"} <= set(s) for s in scores.values())
    assert "pattern" in result["table"]["try_on"]["surf"] and "iou" not in result["table"]["try_on"]["surf"]
    # one-step estimates at given noise levels instead of sampling: one row per model and time
    levels = evaluate_models(
        [f"surf={out / 'pipeline'}"],
        small_dataset,
        split="train",
        families=("try_off",),
        limit=1,
        with_baselines=False,
        denoise_at=(0.05, 1.0),
    )
    assert set(levels["table"]["try_off"]) == {"surf@t=0.05", "surf@t=1"}
    assert all("iou" in row for row in levels["table"]["try_off"].values())
    shipped = Path(__file__).resolve().parent.parent / "assets" / "omfa-tiny"  # a 128x96 model
    with pytest.raises(ValueError, match="works on 128x96 px images but .* has 64x48"):
        evaluate_models([str(shipped)], small_dataset, split="train", with_baselines=False)
