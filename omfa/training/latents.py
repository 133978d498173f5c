"""The latent cache: a training set's images encoded once by a VAE, kept on disk, read back per step.

`LatentDataset(dataset, vae, cache_dir)` wraps any training dataset (the
synthetic shards, a real loader, a list of samples) and serves the same
samples with every image `example_from_sample` can read replaced by its
latents (C, h, w) float32 (`omfa.latents.encode`, the pipeline's own
function). Its `size_hw` is the latent size, which models trained on it take
as their canvas, so `omfa.training.batch.collate` and the loss run unchanged.

What is cached, and why it is enough: `example_from_sample` has no
augmentation; its only random choice is which dressed image (the portrait or
the person) feeds a try-off. Each slot is therefore filled with one of a fixed
set of sample images (`LATENT_SOURCES`) and the target view's pose map of the
model's kind, all deterministic, so caching each of them once per sample
covers every draw. The pose map is encoded as the pipeline encodes the pose
it is given (`OMFAPipeline._gather`), so the pose input has the latent
channels in training as at inference.

Layout of `cache_dir` (default: `<run>/latents`)::

    <vae digest>/chunk-000000.safetensors   samples 0..chunk_size-1: tensors "<index>.<key>",
                                             metadata: the keys, the count and each sample's
                                             non-image fields (meta, tasks) as JSON
    <vae digest>/chunk-000001.safetensors   ...

The folder is named by a content hash of the VAE (`omfa.latents.vae_digest`),
so latents of another VAE are never read. A chunk is written to a temporary
name and renamed once complete, so a killed encode leaves whole chunks and the
next run encodes only the rest; a chunk with fewer samples than `chunk_size`
(the end of a dataset still being generated) is re-encoded when the dataset grows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omfa.canvas import image_to_tensor
from omfa.latents import LatentRGBMap, encode, fit_rgb_map, latent_channels, vae_digest, vae_factor
from omfa.pose.condition import DEFAULT_POSE_CONDITION, sample_key

# Every sample image a canvas slot may be filled with (`omfa.data.examples.example_from_sample`).
LATENT_SOURCES: tuple[str, ...] = ("reference", "person", "person_same", "upper_a", "lower_a", "upper_b", "lower_b")


def _chunk_name(index: int) -> str:
    return f"chunk-{index:06d}.safetensors"


def _info(sample: dict) -> dict[str, Any]:
    """The sample's non-image fields the training reads (`meta`, and `tasks` of real samples)."""
    return {k: v for k, v in sample.items() if k in ("meta", "tasks")}


class LatentDataset(Sequence):
    """`dataset`'s samples with their slot images and pose maps as VAE latents, cached under `cache_dir`.

    Item i is a dict: `LATENT_SOURCES` and the pose map of `pose_condition`
    that sample i has, each a float32 (C, h, w) latent tensor, plus its `meta`
    (and `tasks`). `encoded` counts the samples this instance encoded (not
    read from the cache). Encoding runs on the VAE's device, `batch_size`
    images at a time; `log` reports each chunk written.
    """

    def __init__(
        self,
        dataset: Sequence[dict],
        vae: Any,
        cache_dir: str | os.PathLike,
        *,
        pose_condition: str = DEFAULT_POSE_CONDITION,
        chunk_size: int = 64,
        batch_size: int = 16,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if chunk_size < 1 or batch_size < 1:
            raise ValueError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
        self.dataset, self.vae = dataset, vae
        self.keys: tuple[str, ...] = (*LATENT_SOURCES, sample_key(pose_condition))
        self.chunk_size, self.batch_size, self.log = chunk_size, batch_size, log
        self.folder = Path(cache_dir) / vae_digest(vae)
        self.factor, self.channels = vae_factor(vae), latent_channels(vae)
        from omfa.training.loop import dataset_size_hw  # the loop imports this module

        self.pixel_size_hw: tuple[int, int] = dataset_size_hw(dataset)  # (height, width) px of its images
        if any(n % self.factor for n in self.pixel_size_hw):
            height, width = self.pixel_size_hw
            raise ValueError(
                f"the dataset's images are {height}x{width} px, not a multiple of the VAE's {self.factor}x "
                f"downsampling; make the data at a size divisible by {self.factor}"
            )
        self.encoded = 0
        self._chunks: list[tuple[Path, list[dict]]] = []  # per chunk: its file and each sample's record
        self._length = 0
        self._handles: dict[Path, Any] = {}
        self.refresh()

    # -- the cache -------------------------------------------------------------

    def refresh(self) -> int:
        """Encode the samples the dataset gained since (or that no complete chunk holds); returns how many."""
        if hasattr(self.dataset, "refresh"):
            self.dataset.refresh()
        before = self.encoded
        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(self.dataset)
        chunks = []
        for c in range(-(-n // self.chunk_size)):
            start, stop = c * self.chunk_size, min((c + 1) * self.chunk_size, n)
            path = self.folder / _chunk_name(c)
            records = self._read_records(path, stop - start)
            if records is None:
                self._handles.pop(path, None)
                records = self._write_chunk(path, range(start, stop))
            chunks.append((path, records))
        self._chunks, self._length = chunks, n
        return self.encoded - before

    def _read_records(self, path: Path, count: int) -> list[dict] | None:
        """The sample records of a complete chunk of `count` samples with this cache's keys, else None."""
        if not path.is_file():
            return None
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        if int(meta.get("count", -1)) != count or json.loads(meta.get("keys", "[]")) != list(self.keys):
            return None
        return json.loads(meta["records"])

    def _write_chunk(self, path: Path, indices: range) -> list[dict]:
        jobs, records = [], []  # jobs: (tensor name, image) of every image to encode
        for i in indices:
            sample = self.dataset[i]
            present = [k for k in self.keys if isinstance(sample.get(k), np.ndarray)]
            jobs += [(f"{i}.{k}", sample[k]) for k in present]
            records.append({"index": i, "keys": present, "info": _info(sample)})
        tensors = {}
        for b in range(0, len(jobs), self.batch_size):
            names, images = zip(*jobs[b : b + self.batch_size])
            latents = encode(self.vae, torch.stack([image_to_tensor(x) for x in images])).float().cpu()
            tensors |= {name: z.contiguous() for name, z in zip(names, latents)}
        metadata = {"count": str(len(records)), "keys": json.dumps(list(self.keys)), "records": json.dumps(records)}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: DDP ranks may refresh at once
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)  # a chunk exists only once it is whole
        self.encoded += len(records)
        if self.log is not None:
            self.log(f"latent cache: encoded samples {indices.start}..{indices.stop - 1} into {path}")
        return records

    # -- the samples -----------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    @property
    def size_hw(self) -> tuple[int, int]:
        """(height, width) of the latents: the canvas of a model trained on them."""
        height, width = self.pixel_size_hw
        return height // self.factor, width // self.factor

    def _record(self, i: int) -> tuple[Path, dict]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} is out of range; the latent dataset has {len(self)} samples")
        i %= len(self)
        path, records = self._chunks[i // self.chunk_size]
        return path, records[i % self.chunk_size]

    def sample_info(self, i: int) -> dict[str, Any]:
        """Sample i's non-image fields (`meta`, `tasks`), read from the chunk's metadata: no tensor is loaded."""
        return self._record(i)[1]["info"]

    def __getitem__(self, i: int) -> dict:  # type: ignore[override]
        path, record = self._record(i)
        if path not in self._handles:
            self._handles[path] = safe_open(path, "pt")  # memory-mapped: a step reads only its samples
        f = self._handles[path]
        return {k: f.get_tensor(f"{record['index']}.{k}") for k in record["keys"]} | record["info"]


def fit_preview_map(latents: LatentDataset, samples: int = 32) -> LatentRGBMap:
    """A `LatentRGBMap` fitted on the first `samples` samples' slot images (pose maps left out:
    previews show people and garments) against their cached latents."""
    zs, images = [], []
    for i in range(min(samples, len(latents))):
        pixels, cached = latents.dataset[i], latents[i]
        for key in LATENT_SOURCES:
            if key in cached:
                zs.append(cached[key])
                images.append(image_to_tensor(pixels[key]))
    if not zs:
        raise ValueError("the latent dataset has no slot images to fit a preview map on")
    return fit_rgb_map(torch.stack(zs), torch.stack(images))
