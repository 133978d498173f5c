"""Training at scale, at tiny size: the real-data configs, the FLUX backbone, --dry-run, the accelerate configs."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_backbone_flux import tiny_backbone

from omfa.training.cli import main, training_data
from omfa.training.loop import CONFIGS, train

ROOT = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
FIXTURES = {"viton-hd": "viton_hd", "dresscode": "dresscode", "deepfashion": "deepfashion"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def flux_dir(tmp_path) -> Path:
    """A tiny random FluxTransformer2DModel in diffusers layout: the `--pretrained` folder."""
    tiny_backbone(seed=3).save_pretrained(tmp_path / "flux")
    return tmp_path / "flux"


@pytest.mark.parametrize("dataset", list(FIXTURES))
@pytest.mark.parametrize("size_hw", [(512, 384), (1024, 768)])
def test_real_data_configs_give_samples_at_their_size(request, dataset, size_hw):
    cfg = CONFIGS[f"{dataset}-{size_hw[0]}"]
    assert cfg.size_hw == size_hw and cfg.dataset == dataset and cfg.mixed_precision == "bf16"
    assert cfg.backbone == "flux" and cfg.lora_rank > 0 and cfg.gradient_checkpointing
    data = training_data(cfg, request.getfixturevalue(FIXTURES[dataset]))
    sample = data[0]
    images = [v for k, v in sample.items() if k not in ("meta", "tasks")]
    assert images and all(v.shape[:2] == size_hw for v in images)
    assert sample["tasks"]  # the train split supervises a task (try-off, or multi-view)
    # multi-view needs the target's pose: the estimator's map (blank here: the fixture's block figures
    # are no people to it; tests/test_data_real.py estimates a real photograph's)
    assert cfg.estimate_pose == (dataset == "deepfashion") and ("pose" in sample) == cfg.estimate_pose
    if cfg.estimate_pose:
        assert sample["pose"].shape == (*size_hw, 3) and not sample["pose"].any()


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("dataset", list(FIXTURES))
def test_dry_run_of_flux_lora_on_each_real_dataset(request, dataset, flux_dir, capsys):
    root = request.getfixturevalue(FIXTURES[dataset])
    # the README's command at tiny size: the 1024 config, bf16 autocast as on a GPU
    args = ["train", "--config", f"{dataset}-1024", "--size", "16x12", "--pretrained", str(flux_dir)]
    assert main([*args, "--data", str(root), "--dry-run"]) == 0
    out = _lines(capsys)
    assert out[0].startswith(f"dry run: {len(training_data(CONFIGS[f'{dataset}-1024'], root))} samples in {dataset}")
    built = out[1]
    assert built.startswith("training FluxOMFA (flux backbone") and "LoRA rank 16, gradient checkpointing" in built
    assert f"data {dataset} at 16x12 px," in built and "canvas 16x12 px per slot (3 channels)" in built
    assert "device cpu, mixed precision bf16, world size 1" in built
    trainable, total = (float(x) for x in built.split(": ")[1].split(" parameters")[0].replace("M", "").split(" of "))
    assert 0 < trainable < total
    assert out[-1].startswith("dry run: 2 steps; the exported pipeline loads (FluxOMFA, 16x12 px)")
    assert not any(p.name.startswith("checkpoint") for p in root.iterdir())  # nothing written beside the data


def flux_pipeline_folder(root: Path) -> Path:
    """A tiny stand-in for a local FLUX.1 download: model_index.json, transformer/ and vae/ (4 latent channels)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        latent_channels=4,
        block_out_channels=(8, 8),  # one downsampling: 2x (FLUX.1's VAE: 8x, 16 channels)
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        scaling_factor=0.3611,  # FLUX.1's scaling and shift
        shift_factor=0.1159,
    )
    vae.save_pretrained(root / "vae")
    tiny_backbone(seed=3, in_channels=4 * 4).save_pretrained(root / "transformer")
    (root / "model_index.json").write_text('{"_class_name": "FluxPipeline", "transformer": ["diffusers", "x"]}')
    return root


def test_dry_run_of_flux_on_its_vae_latents_the_readme_command(viton_hd, tmp_path, capsys):
    flux = flux_pipeline_folder(tmp_path / "FLUX.1-dev")
    args = ["train", "--config", "viton-hd-1024", "--backbone", "flux", "--pretrained", str(flux), "--vae", str(flux)]
    assert main([*args, "--data", str(viton_hd), "--size", "32x24", "--dry-run"]) == 0
    out = _lines(capsys)
    built = next(line for line in out if line.startswith("training FluxOMFA"))
    assert f"canvas 16x12 latents of {flux} per slot (4 channels)" in built
    assert out[-1] == "dry run: 2 steps; the exported pipeline loads (FluxOMFA, 32x24 px)"
    # FLUX.1 without its VAE: a usage error that says what to pass
    with pytest.raises(SystemExit) as exited:
        main([*args[:-2], "--data", str(viton_hd), "--size", "32x24", "--dry-run"])
    assert exited.value.code == 2
    wanted = r"works on 4-channel slots, but this canvas has 3 \(pixels\).*pass --vae DIR"
    assert re.search(wanted, capsys.readouterr().err)


def test_dry_run_of_the_from_scratch_model_on_real_data(viton_hd, capsys):
    args = ["train", "--config", "tiny-test", "--dataset", "viton-hd", "--size", "32x24", "--data", str(viton_hd)]
    assert main([*args, "--dry-run"]) == 0
    out = _lines(capsys)
    assert out[1].startswith("training OMFATransformer (omfa backbone)") and "(all weights)" in out[1]
    assert out[-1] == "dry run: 2 steps; the exported pipeline loads (OMFATransformer, 32x24 px)"


def test_train_errors_name_the_missing_piece(viton_hd, tmp_path, capsys):
    base = ["train", "--config", "viton-hd-512", "--data", str(viton_hd)]
    with pytest.raises(SystemExit):
        main([*base, "--dry-run"])
    assert "backbone flux needs --pretrained DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--pretrained", str(tmp_path)])
    assert "--out is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--config", "tiny-test", "--dataset", "dresscode", "--data", str(viton_hd), "--dry-run"])
    assert "needs a canvas size: pass --size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--config", "viton-hd-512", "--dataset", "dresscode", "--data", str(viton_hd), "--dry-run"])
    assert "upper_body/images is not a folder" in capsys.readouterr().err


def test_what_the_flags_cannot_build_is_a_usage_error(viton_hd, tmp_path, capsys):
    """A model or dataset the flags name but that cannot be built ends `omfa train` as a bad flag does: one
    line on stderr and exit status 2, no traceback."""
    tiny_backbone(seed=3, in_channels=64).save_pretrained(tmp_path / "flux-latent")  # FLUX.1's latent channels
    base = ["train", "--config", "viton-hd-512", "--size", "16x12", "--mixed-precision", "no", "--dry-run"]
    cases = {
        "FLUX.1 needs its own VAE: pass --vae DIR": ["--pretrained", str(tmp_path / "flux-latent")],
        str(tmp_path / "no-flux"): ["--pretrained", str(tmp_path / "no-flux")],
        str(tmp_path / "no-data"): ["--pretrained", str(tmp_path / "flux-latent"), "--data", str(tmp_path / "no-data")],
    }
    for message, flags in cases.items():
        with pytest.raises(SystemExit) as exited:
            main([*base, "--data", str(viton_hd), *flags])
        err = capsys.readouterr().err
        assert exited.value.code == 2, err
        assert "Traceback" not in err and err.splitlines()[-1].startswith("omfa train: error: ")
        assert message in err.splitlines()[-1], err


def test_flux_lora_run_resumes_exactly_and_exports_a_loadable_pipeline(dresscode, flux_dir, tmp_path):
    from omfa.backbones.flux import FluxOMFA
    from omfa.pipeline import OMFAPipeline

    cfg = replace(
        CONFIGS["dresscode-512"],
        pretrained=str(flux_dir),
        size_hw=(16, 12),
        steps=4,
        batch_size=2,
        warmup=1,
        mixed_precision="no",
        log_every=2,
        save_every=2,
    )
    data = training_data(cfg, dresscode)
    quiet = lambda *_: None  # noqa: E731
    full = train(cfg, data, tmp_path / "full", log=quiet)
    assert train(cfg, data, tmp_path / "split", stop_after=1, log=quiet)["step"] == 1
    assert train(cfg, data, tmp_path / "split", log=quiet)["step"] == full["step"] == 4
    ckpt = tmp_path / "full" / "checkpoint"
    a, b = load_file(ckpt / "model.safetensors"), load_file(tmp_path / "split" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a LoRA checkpoint holds what trains, not the frozen base, and no EMA
    assert all("lora_" in k or not k.startswith("backbone.") for k in a) and not (ckpt / "ema.safetensors").exists()
    pipe = OMFAPipeline.load(tmp_path / "full" / "pipeline", device="cpu")
    assert isinstance(pipe.transformer, FluxOMFA) and pipe.canvas_hw == (16, 12)
    assert not (tmp_path / "full" / "pipeline" / "transformer" / "transformer").exists()  # the base is not copied
    loaded = dict(pipe.transformer.named_parameters())
    assert all(torch.equal(loaded[k], v) for k, v in a.items())  # the export is the last step's weights
    rng = np.random.default_rng(0)
    result = pipe("try_off_upper", reference=rng.integers(0, 256, (16, 12, 3), dtype=np.uint8), num_inference_steps=2)
    assert result.images["upper"].size == (12, 16)


def test_a_trained_flux_pipeline_serves_in_the_studio(dresscode, flux_dir, tmp_path):
    """What `app.py --model RUN/pipeline` serves: the studio prepares a real photo and runs a try-off on it."""
    from omfa.pipeline import OMFAPipeline
    from omfa.studio.context import EXAMPLES_DIR, StudioContext
    from omfa.studio.runs import stream_try_off
    from omfa.studio.settings import RunSettings

    cfg = replace(
        CONFIGS["dresscode-512"],
        pretrained=str(flux_dir),
        size_hw=(64, 48),
        steps=1,
        batch_size=1,
        mixed_precision="no",
    )
    train(cfg, training_data(cfg, dresscode), tmp_path / "run", log=lambda *_: None)
    pipe = OMFAPipeline.load(tmp_path / "run" / "pipeline", device="cpu")
    assert pipe.transformer.config.pose_condition == "parts"  # real data: part-colour pose maps
    context = StudioContext(pipe)
    try:
        frames = list(stream_try_off(context, str(EXAMPLES_DIR / "dressed.png"), "upper", RunSettings(steps=2)))
    finally:
        context.close()
    assert frames[-1].images["upper"].shape == (64, 48, 3)


def test_full_fine_tune_checkpoints_every_weight(viton_hd, flux_dir, tmp_path):
    cfg = replace(
        CONFIGS["viton-hd-512"],
        pretrained=str(flux_dir),
        size_hw=(16, 12),
        lora_rank=0,
        steps=1,
        batch_size=1,
        gradient_checkpointing=False,
        mixed_precision="no",
    )
    train(cfg, training_data(cfg, viton_hd), tmp_path / "run", log=lambda *_: None)
    saved = load_file(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert len(saved) == len(dict(tiny_backbone().named_parameters())) + 4  # the backbone, pose embedder, prompt
    assert (tmp_path / "run" / "pipeline" / "transformer" / "transformer" / "config.json").is_file()


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=[p.stem for p in ACCELERATE_CONFIGS])
def test_shipped_accelerate_configs_are_valid(path):
    """Each YAML loads into accelerate's own ClusterConfig, and its FSDP fields are `accelerate launch` options."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    raw = yaml.safe_load(path.read_text())
    fields = set(ClusterConfig.__dataclass_fields__)
    assert set(raw) <= fields, set(raw) - fields
    assert config.mixed_precision in ("bf16", "no") and config.num_processes >= 2
    launch_options = vars(launch_command_parser().parse_args(["script.py"]))
    assert set(config.fsdp_config) <= set(launch_options), set(config.fsdp_config) - set(launch_options)
    if config.fsdp_config:
        assert config.fsdp_config["fsdp_version"] == 2  # the loop refuses FSDP1 (omfa.training.sharding)
        wrapped = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(",")
        if path.stem.endswith("_omfa"):
            from omfa.denoiser import OMFATransformer

            model = OMFATransformer.from_preset("tiny", sample_size=(16, 16))
        else:
            model = tiny_backbone()
        names = {type(m).__name__ for m in model.modules()}
        assert set(wrapped) <= names, set(wrapped) - names  # accelerate wraps these by class name
    assert ACCELERATE_CONFIGS and {p.stem for p in ACCELERATE_CONFIGS} >= {"ddp_bf16", "fsdp_bf16", "cpu_2proc"}
