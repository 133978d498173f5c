"""Dataset storage: tar shards of PNG + JSON, an index per shard, random access.

Layout of a dataset folder::

    dataset.json                  config (seed, counts, image size), preset partition, shard size, format version
    train/shard-000000.tar        samples 0..S-1: "<key>.<name>.png" and "<key>.meta.json"
    train/shard-000000.json       the shard's index: keys and each member's byte offset and size
    val/...  test/...

A shard counts as written once its index exists; both files are written to a
temporary name and renamed, so an interrupted run leaves no half shard and a
rerun continues where it stopped. Tar headers carry no time or owner, PNGs
are encoded the same way each time: the same seed gives the same bytes.

`ShardDataset(root, split)` reads whatever shards are complete (training may
start while generation goes on) and returns each sample as the dict
described in `SAMPLE_IMAGES`, `SAMPLE_LABELS`, `SAMPLE_MASKS` plus `meta`;
`size_hw` is the images' size, which models trained on the data take as
their canvas. Format-2 datasets written before dataset.json recorded the size
(`config.size_hw`) are 128x96 (`UNRECORDED_SIZE_HW`).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FORMAT_VERSION = 2  # 2: the dense-correspondence pose maps "surface" and "surface_ref"
# The image size of format-2 datasets whose dataset.json has no config.size_hw (written before it was recorded).
UNRECORDED_SIZE_HW: tuple[int, int] = (128, 96)
# RGB uint8 (H, W, 3) images; pose and surface maps have a black background, the rest white.
SAMPLE_IMAGES: tuple[str, ...] = (
    "reference",
    "person",
    "person_same",
    "pose",
    "pose_ref",
    "surface",
    "surface_ref",
    "upper_a",
    "lower_a",
    "upper_b",
    "lower_b",
)
# uint8 (H, W) label maps: the ids of `omfa.data.examples.LABELS` (0 background, 1 skin, 2 hair, 3 upper, ...).
SAMPLE_LABELS: tuple[str, ...] = ("labels_reference", "labels_person", "labels_person_same")
# bool (H, W) garment pixels of each shop image.
SAMPLE_MASKS: tuple[str, ...] = ("mask_upper_a", "mask_lower_a", "mask_upper_b", "mask_lower_b")


class DatasetError(ValueError):
    """A dataset folder that is missing, malformed or made with other settings."""


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB (H, W, 3), a uint8 label map or a bool mask (H, W)."""
    if array.dtype == bool:
        image = Image.fromarray(array.astype(np.uint8) * 255, mode="L")
    else:
        image = Image.fromarray(np.ascontiguousarray(array))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def decode_png(data: bytes, kind: str) -> np.ndarray:
    """Inverse of `encode_png`; kind is "image", "labels" or "mask"."""
    image = Image.open(io.BytesIO(data))
    if kind == "image":
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    return array > 127 if kind == "mask" else array


def _members(sample: dict) -> list[tuple[str, bytes]]:
    """(member suffix, bytes) of one sample, in a fixed order."""
    missing = [k for k in (*SAMPLE_IMAGES, *SAMPLE_LABELS, *SAMPLE_MASKS, "meta") if k not in sample]
    if missing:
        raise DatasetError(f"sample lacks {', '.join(missing)}; a synthetic sample needs every slot and label map")
    members = [(f"{name}.png", encode_png(sample[name])) for name in (*SAMPLE_IMAGES, *SAMPLE_LABELS, *SAMPLE_MASKS)]
    members.append(("meta.json", json.dumps(sample["meta"], sort_keys=True).encode()))
    return members


def write_shard(directory: Path, index: int, samples: Iterable[dict]) -> dict[str, Any]:
    """Write one shard (tar + index) atomically; returns the index."""
    directory.mkdir(parents=True, exist_ok=True)
    name = shard_name(index)
    tar_path, tmp_path = directory / f"{name}.tar", directory / f"{name}.tar.tmp"
    entries = []
    with tarfile.open(tmp_path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            key = sample["meta"]["key"]
            if len(key) > 60:
                raise DatasetError(f"sample key {key!r} is too long for a tar member name; use at most 60 characters")
            record = {"key": key, "group": sample["meta"].get("group"), "members": {}}
            for suffix, data in _members(sample):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                # A USTAR header is one 512-byte block (names stay under 100 characters).
                data_offset = tar.offset + tarfile.BLOCKSIZE
                tar.addfile(info, io.BytesIO(data))
                record["members"][suffix.split(".")[0]] = [data_offset, len(data)]
            entries.append(record)
    os.replace(tmp_path, tar_path)
    shard_index = {"shard": f"{name}.tar", "samples": entries}
    _write_json(directory / f"{name}.json", shard_index)
    return shard_index


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=1))
    os.replace(tmp, path)


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The dataset's `dataset.json` (raises DatasetError naming the path when it is missing)."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise DatasetError(
            f"{path} does not exist; a synthetic dataset folder holds dataset.json and <split>/shard-*.tar "
            "(generate one with `omfa synth --out FOLDER`)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{path} has format version {manifest.get('version')}; this code reads {FORMAT_VERSION}")
    return manifest


def manifest_size_hw(manifest: dict[str, Any]) -> tuple[int, int]:
    """(height, width) of a dataset's images, from its dataset.json content."""
    height, width = manifest["config"].get("size_hw", UNRECORDED_SIZE_HW)
    return int(height), int(width)


def _with_size(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its image size spelled out (older ones omit it)."""
    return manifest | {"config": manifest["config"] | {"size_hw": list(manifest_size_hw(manifest))}}


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Create dataset.json, or check that an existing one has the same settings (resuming).

    A dataset.json written before the size was recorded matches a 128x96
    config and is left as it is, so such a dataset resumes.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / "dataset.json"
    if path.is_file():
        existing = json.loads(path.read_text())
        if _with_size(existing) != _with_size(manifest):
            existing, manifest = _with_size(existing), _with_size(manifest)
            changed = sorted(k for k in set(existing) | set(manifest) if existing.get(k) != manifest.get(k))
            raise DatasetError(
                f"{path} was made with other settings ({', '.join(changed)} differ); "
                "resume with the same flags or write to a new folder"
            )
        return
    _write_json(path, manifest)


class ShardDataset(Sequence):
    """Random access to the complete shards of one split.

    Each item is a dict: the RGB images of SAMPLE_IMAGES (uint8 (H, W, 3)),
    the label maps of SAMPLE_LABELS (uint8 (H, W)), the masks of SAMPLE_MASKS
    (bool (H, W)) and `meta` (see `omfa.data.synthetic.SampleSpec.meta`).
    """

    def __init__(self, root: str | os.PathLike, split: str) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if split not in self.manifest["config"]["counts"]:
            raise DatasetError(
                f"split {split!r} is not in {self.root}; it has {', '.join(self.manifest['config']['counts'])}"
            )
        self.split = split
        self._entries: list[tuple[Path, dict]] = []
        self.refresh()

    def refresh(self) -> int:
        """Rescan the split for shards completed since (generation may still be running).

        Returns how many samples were added; existing indices keep their samples.
        """
        directory = self.root / self.split
        known = {path for path, _ in self._entries}
        added = 0
        for index_path in sorted(directory.glob("shard-*.json")):
            shard = json.loads(index_path.read_text())
            tar_path = directory / shard["shard"]
            if tar_path in known:
                continue
            if not tar_path.is_file():
                raise DatasetError(
                    f"{index_path} lists {tar_path}, which is missing; delete the index to regenerate it"
                )
            self._entries += [(tar_path, entry) for entry in shard["samples"]]
            added += len(shard["samples"])
        return added

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_hw(self) -> tuple[int, int]:
        """(height, width) px of every image of the dataset (the canvas of models trained on it)."""
        return manifest_size_hw(self.manifest)

    def keys(self) -> list[str]:
        return [entry["key"] for _, entry in self._entries]

    def groups(self) -> list[int | None]:
        """Multi-view group of each sample (None outside the test split)."""
        return [entry["group"] for _, entry in self._entries]

    def read_member(self, i: int, name: str) -> bytes:
        """The raw bytes of one member of sample i (e.g. "person" -> its PNG)."""
        tar_path, entry = self._entries[i]
        offset, size = entry["members"][name]
        with open(tar_path, "rb") as handle:
            handle.seek(offset)
            return handle.read(size)

    def __getitem__(self, i: int) -> dict:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} is out of range; {self.split} has {len(self)} samples")
        i %= len(self)
        tar_path, entry = self._entries[i]
        sample: dict[str, Any] = {}
        with open(tar_path, "rb") as handle:
            for name, (offset, size) in entry["members"].items():
                handle.seek(offset)
                data = handle.read(size)
                if name == "meta":
                    sample["meta"] = json.loads(data)
                else:
                    kind = "mask" if name in SAMPLE_MASKS else "labels" if name in SAMPLE_LABELS else "image"
                    sample[name] = decode_png(data, kind)
        return sample
