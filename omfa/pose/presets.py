"""Named poses a fashion user picks from: `pose_presets/*.json`.

One file per preset, named after it (`a_pose.json` holds preset "a_pose")::

    {
      "name": "a_pose",
      "title": "A-pose",                        # optional display name
      "tags": ["standing", "neutral"],
      "yaw_deg": 0.0,                           # optional default camera yaw
      "global_orient": [0.0, 0.0, 0.0],         # SMPL-X axis-angle, radians
      "body_pose": [[0.0, 0.0, 0.0], ...]       # 21 rows, SMPL-X body joint order
    }

A malformed file raises `PresetError` naming the file and the field. The same
format stores poses estimated from photographs (`omfa pose from-photo`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omfa.pose.body import NUM_BODY_JOINTS, Pose, PoseError

PRESET_DIR = Path(__file__).resolve().parents[2] / "pose_presets"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_REQUIRED = ("name", "tags", "global_orient", "body_pose")
_OPTIONAL = ("title", "yaw_deg")


class PresetError(ValueError):
    """A preset file that does not follow the schema, or an unknown preset name."""


@dataclass(frozen=True, eq=False)
class PosePreset:
    """A named pose with tags and a default camera yaw (degrees, see omfa.pose.render)."""

    name: str
    tags: tuple[str, ...]
    pose: Pose
    yaw_deg: float = 0.0
    title: str = field(default="")

    @property
    def label(self) -> str:
        """Display name: the title, else the name with spaces."""
        return self.title or self.name.replace("_", " ")

    def to_json(self) -> dict[str, Any]:
        """The file format above, as plain data."""
        data: dict[str, Any] = {"name": self.name}
        if self.title:
            data["title"] = self.title
        data["tags"] = list(self.tags)
        data["yaw_deg"] = self.yaw_deg
        data.update(self.pose.to_json())
        return data


def parse_preset(data: Any, source: str) -> PosePreset:
    """Validate one preset's JSON data; `source` (a file name) appears in every error."""
    if not isinstance(data, dict):
        raise PresetError(f"{source}: top level must be a JSON object, got {type(data).__name__}")
    for key in _REQUIRED:
        if key not in data:
            raise PresetError(f"{source}: missing field {key!r}; required fields are {', '.join(_REQUIRED)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise PresetError(f"{source}: unknown field {unknown[0]!r}; allowed: {', '.join(_REQUIRED + _OPTIONAL)}")
    name = data["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise PresetError(f"{source}: field 'name' is {name!r}; use lower-case letters, digits and underscores")
    tags = data["tags"]
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag for tag in tags):
        raise PresetError(f"{source}: field 'tags' must be a list of non-empty strings, got {tags!r}")
    title = data.get("title", "")
    if not isinstance(title, str):
        raise PresetError(f"{source}: field 'title' must be a string, got {title!r}")
    yaw = data.get("yaw_deg", 0.0)
    if isinstance(yaw, bool) or not isinstance(yaw, (int, float)) or not math.isfinite(yaw):
        raise PresetError(f"{source}: field 'yaw_deg' must be a number of degrees, got {yaw!r}")
    for key, rows in (("global_orient", None), ("body_pose", NUM_BODY_JOINTS)):
        _check_rotations(data[key], rows, f"{source}: field {key!r}")
    try:
        pose = Pose.from_json(data)
    except PoseError as error:  # already shape-checked above; kept for odd numeric types
        raise PresetError(f"{source}: {error}") from None
    return PosePreset(name=name, tags=tuple(tags), pose=pose, yaw_deg=float(yaw), title=title)


def _check_rotations(value: Any, rows: int | None, where: str) -> None:
    """Axis-angle triples of finite numbers with angles up to 180 degrees."""
    expected = "3 numbers" if rows is None else f"{rows} rows of 3 numbers"
    triples = [value] if rows is None else value
    if not isinstance(triples, list) or (rows is not None and len(triples) != rows):
        size = len(triples) if isinstance(triples, list) else type(triples).__name__
        raise PresetError(f"{where} has {size} rows; need {expected}")
    for index, triple in enumerate(triples):
        if (
            not isinstance(triple, list)
            or len(triple) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in triple)
        ):
            at = "" if rows is None else f" row {index}"
            raise PresetError(f"{where}{at} is {triple!r}; need {expected} (axis-angle, radians)")
        if float(np.linalg.norm(triple)) > math.pi + 1e-6:
            at = "" if rows is None else f" row {index}"
            raise PresetError(f"{where}{at} turns by more than 180 degrees; use the equivalent shorter rotation")


def read_preset(path: str | Path) -> PosePreset:
    """Load and validate one preset file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PresetError(f"{path.name}: not valid JSON ({error})") from None
    except OSError as error:
        raise PresetError(f"{path}: cannot be read ({error.strerror})") from None
    return parse_preset(data, path.name)


def write_preset(preset: PosePreset, path: str | Path) -> None:
    """Write `preset` in the file format (one body_pose row per line)."""
    data = preset.to_json()
    body = ",\n    ".join(json.dumps([round(v, 6) for v in row]) for row in data.pop("body_pose"))
    data["global_orient"] = [round(v, 6) for v in data["global_orient"]]
    head = json.dumps(data, indent=2)[:-2]  # drop the closing "\n}"
    Path(path).write_text(f'{head},\n  "body_pose": [\n    {body}\n  ]\n}}\n', encoding="utf-8")


@functools.lru_cache(maxsize=8)
def _load_cached(directory: str, listing: tuple[tuple[str, int, int], ...]) -> dict[str, PosePreset]:
    # `listing` (file names, sizes, modification times) is part of the cache
    # key, so edited, added or removed files are read again.
    folder = Path(directory)
    presets: dict[str, PosePreset] = {}
    for file_name, _, _ in listing:
        path = folder / file_name
        preset = read_preset(path)
        if preset.name != path.stem:
            raise PresetError(
                f"{path.name}: field 'name' is {preset.name!r} but the file is {path.stem!r}.json; make them match"
            )
        presets[preset.name] = preset
    return presets


def load_presets(directory: str | Path | None = None) -> dict[str, PosePreset]:
    """All presets in `directory` (default: the repository's pose_presets/), by name, sorted."""
    folder = (Path(directory) if directory is not None else PRESET_DIR).resolve()
    if not folder.is_dir():
        raise PresetError(f"preset folder {folder} does not exist; pass a folder of *.json presets")
    listing = tuple((path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(folder.glob("*.json")))
    if not listing:
        raise PresetError(f"preset folder {folder} holds no *.json files")
    return dict(_load_cached(str(folder), listing))


def get_preset(name: str, directory: str | Path | None = None) -> PosePreset:
    """One preset by name; an unknown name raises PresetError listing the valid ones."""
    presets = load_presets(directory)
    if name not in presets:
        raise PresetError(f"unknown pose preset {name!r}; choose one of: {', '.join(presets)}")
    return presets[name]
