"""The latent canvas end to end, with tiny random diffusers autoencoders saved to folders:
loading and scaling, the latent cache and its resumption, training, export, loading and previews."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from engine_helpers import HW, fake_dataset, random_image, tiny_dc, tiny_kl, tiny_model, tiny_taesd

from omfa.canvas import image_to_tensor
from omfa.diffusion import make_scheduler
from omfa.latents import LatentRGBMap, decode, decode_preview, encode, fit_rgb_map, load_vae, vae_digest, vae_factor
from omfa.pipeline import DEFAULT_PREVIEW_EVERY, OMFAPipeline
from omfa.training.latents import LATENT_SOURCES, LatentDataset
from omfa.training.loop import CONFIGS, train

QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def kl_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae") / "kl"
    tiny_kl().save_pretrained(folder)
    return folder


def test_every_autoencoder_class_loads_from_a_folder_and_round_trips_shapes(tmp_path):
    x = image_to_tensor(random_image(np.random.default_rng(0)))[None]  # (1, 3, 32, 24)
    for name, vae in {"AutoencoderKL": tiny_kl(), "AutoencoderTiny": tiny_taesd(), "AutoencoderDC": tiny_dc()}.items():
        vae.save_pretrained(tmp_path / name)
        loaded = load_vae(tmp_path / name)
        assert type(loaded).__name__ == name and not loaded.training
        assert vae_factor(loaded) == 2 and vae_digest(loaded) == vae_digest(vae)
        z = encode(loaded, x)
        assert z.shape == (1, 4, HW[0] // 2, HW[1] // 2)
        assert torch.equal(z, encode(loaded, x))  # deterministic (the KL posterior's mode)
        assert decode(loaded, z).shape == (1, 3, *HW)
    # a whole pipeline folder gives its vae/ subfolder
    (tmp_path / "pipe").mkdir()
    tiny_kl().save_pretrained(tmp_path / "pipe" / "vae")
    assert isinstance(load_vae(tmp_path / "pipe"), AutoencoderKL)
    assert vae_digest(tiny_kl(seed=1)) != vae_digest(tiny_kl())


def test_a_folder_that_is_not_a_vae_is_refused_by_name(tmp_path):
    with pytest.raises(
        ValueError, match=r"empty is not a VAE folder \(no config.json\).*AutoencoderKL, AutoencoderTiny"
    ):
        load_vae(tmp_path / "empty")
    tiny_model().save_pretrained(tmp_path / "transformer")
    with pytest.raises(ValueError, match="transformer holds a OMFATransformer, not a VAE; pass a folder of Autoenc"):
        load_vae(tmp_path / "transformer")


def test_scaling_and_shift_follow_the_diffusers_convention():
    # FLUX's VAE: z = (latent - shift) * scale on the way in, latent = z / scale + shift on the way out
    vae = tiny_kl(scaling_factor=0.5, shift_factor=0.25)
    x = image_to_tensor(random_image(np.random.default_rng(1)))[None]
    with torch.no_grad():
        raw = vae.encode(x).latent_dist.mode()
        z = encode(vae, x)
        assert torch.allclose(z, (raw - 0.25) * 0.5)
        assert torch.allclose(decode(vae, z), vae.decode(raw).sample, atol=1e-5)
    # per-channel statistics (SDXL's pipeline convention): z = (latent - mean) * scale / std
    mean, std = [0.1, -0.2, 0.3, 0.0], [0.5, 2.0, 1.0, 4.0]
    stats = tiny_kl(scaling_factor=0.5, latents_mean=mean, latents_std=std)
    with torch.no_grad():
        raw = stats.encode(x).latent_dist.mode()
        z = encode(stats, x)
        for c in range(4):
            assert torch.allclose(z[:, c], (raw[:, c] - mean[c]) * 0.5 / std[c])
        assert torch.allclose(decode(stats, z), stats.decode(raw).sample, atol=1e-5)
    plain = tiny_kl()  # SD's convention: no shift (shift_factor None), scaling 0.18215
    with torch.no_grad():
        assert torch.allclose(encode(plain, x), plain.encode(x).latent_dist.mode() * 0.18215)


def test_the_linear_preview_map_recovers_an_affine_colour_map():
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    z = torch.randn(6, 4, 8, 6, generator=g)
    rgb = torch.einsum("oc,nchw->nohw", weight, z) + bias[:, None, None]
    images = F.interpolate(rgb, scale_factor=4, mode="nearest")  # each latent cell a 4x4 block of its colour
    fitted = fit_rgb_map(z, images)
    assert torch.allclose(fitted.proj.weight[:, :, 0, 0], weight, atol=1e-4)
    assert torch.allclose(fitted.proj.bias, bias, atol=1e-4)
    assert decode_preview(fitted, z, (32, 24)).shape == (6, 3, 32, 24)


def test_the_latent_cache_is_written_once_and_resumes(tmp_path):
    vae, data = tiny_kl(), fake_dataset(10)
    first = LatentDataset(data, vae, tmp_path, chunk_size=4)
    assert first.encoded == 10 and len(first) == 10 and first.size_hw == (16, 12)
    chunks = sorted(first.folder.glob("chunk-*.safetensors"))
    assert [c.name for c in chunks] == [f"chunk-00000{i}.safetensors" for i in range(3)]
    assert first.folder.name == vae_digest(vae)
    item = first[5]
    assert set(item) == {*LATENT_SOURCES, "pose", "meta"}
    for key in (*LATENT_SOURCES, "pose"):  # the pipeline's own encoding of each image (batched: to rounding)
        assert torch.allclose(item[key], encode(vae, image_to_tensor(data[5][key])[None])[0], atol=1e-6), key
    assert item["meta"] == data[5]["meta"] and first.sample_info(5) == {"meta": data[5]["meta"]}
    # a second run reads everything; one whose encode was killed encodes only the missing chunk
    assert LatentDataset(data, vae, tmp_path, chunk_size=4).encoded == 0
    chunks[1].unlink()
    resumed = LatentDataset(data, vae, tmp_path, chunk_size=4)
    assert resumed.encoded == 4 and torch.equal(resumed[5]["person"], item["person"])
    # a growing dataset: the partial last chunk (samples 8, 9) is redone with the new samples
    data += fake_dataset(2, seed=1)
    assert resumed.refresh() == 4 and len(resumed) == 12
    # another pose condition caches its own map kind
    surface = [s | {"surface": s["pose"][::-1].copy()} for s in data]
    assert "surface" in LatentDataset(surface, vae, tmp_path, pose_condition="surface", chunk_size=4)[0]


def test_pixel_sizes_must_divide_by_the_vae_factor(tmp_path):
    with pytest.raises(ValueError, match="33x24 px, not a multiple of the VAE's 2x downsampling"):
        LatentDataset(fake_dataset(2, hw=(33, 24)), tiny_kl(), tmp_path)


def _stream(pipe: OMFAPipeline, **kwargs) -> list:
    rng = np.random.default_rng(3)
    inputs = {k: random_image(rng) for k in ("reference", "upper", "pose")}
    generator = torch.Generator().manual_seed(0)
    return list(pipe.stream("try_on_upper", **inputs, num_inference_steps=6, generator=generator, **kwargs))


def test_train_on_latents_export_load_and_stream(tmp_path, kl_folder):
    cfg = replace(CONFIGS["tiny-test"], steps=4, batch_size=2, vae=str(kl_folder), patch_size=4)
    data = fake_dataset(6)
    assert train(cfg, data, tmp_path, stop_after=2, **QUIET)["step"] == 2
    chunks = list((tmp_path / "latents").glob("*/chunk-*.safetensors"))
    assert len(chunks) == 1
    written = chunks[0].stat().st_mtime_ns
    assert train(cfg, data, tmp_path, **QUIET)["step"] == 4  # resumes, reads the cache
    assert chunks[0].stat().st_mtime_ns == written
    with pytest.raises(ValueError, match="trained on the latents of VAE .*, not pixels; resume with the --vae"):
        train(replace(cfg, vae=None, steps=5), data, tmp_path, **QUIET)

    pipe = OMFAPipeline.load(tmp_path / "pipeline")
    assert isinstance(pipe.vae, AutoencoderKL) and isinstance(pipe.preview_decoder, LatentRGBMap)
    assert pipe.transformer.config.sample_size == [16, 12] and pipe.transformer.config.in_channels == 4
    assert pipe.canvas_hw == HW  # latent size x the VAE's factor
    # a cheap decoder previews every step; the last step is the full VAE's decode
    cheap = _stream(pipe)
    assert all(p.images["person"].size == (HW[1], HW[0]) for p in cheap)
    # without one, the full VAE decodes every k-th step and the last, the steps between carry no image
    pipe.register_modules(preview_decoder=None)
    full = _stream(pipe)
    assert [p.step for p in full if p.images] == [0, 4, 5] and DEFAULT_PREVIEW_EVERY == 4
    assert all(p.images["person"].size == (HW[1], HW[0]) for p in full if p.images)
    assert np.array_equal(np.asarray(full[-1].images["person"]), np.asarray(cheap[-1].images["person"]))
    assert [p.step for p in _stream(pipe, preview_every=2) if p.images] == [0, 2, 4, 5]


def test_a_tiny_vae_previews_every_step_by_itself():
    model = tiny_model(sample_size=(16, 12), in_channels=4, pose_channels=4, patch_size=4)
    pipe = OMFAPipeline(model, make_scheduler("ddim"), vae=tiny_taesd())
    assert pipe.canvas_hw == HW and pipe.preview_decoder is None
    assert all(p.images["person"].size == (HW[1], HW[0]) for p in _stream(pipe))
    with pytest.raises(ValueError, match="a pixel-space pipeline \\(vae=None\\) has none"):
        OMFAPipeline(tiny_model(), make_scheduler("ddim"), preview_decoder=LatentRGBMap())
    with pytest.raises(ValueError, match="preview_every must be an integer >= 1, got 0"):
        _stream(pipe, preview_every=0)
