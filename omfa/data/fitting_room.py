"""Rendering synthetic samples with the pose subsystem's camera.

`FittingRoom` owns one `PoseRenderer` (one OpenGL context; create one per
process) and draws a planned `SampleSpec` into the sample dict that
`omfa.data.shards` stores:

- person images are lit renders of the low-poly mannequin (skin), hair,
  shoes and the two garments, with `PoseRenderer`'s fixed camera, so they
  line up pixel for pixel with the pose maps of the same mesh and yaw;
- label maps are segmentation renders of the same meshes (no anti-aliasing:
  every pixel is exactly one label);
- shop images are the garment alone on the body in a fixed shop pose (arms
  and legs slightly apart), flattened along depth like a garment laid flat,
  framed the same way for every garment of a slot, unlit so the fabric shows
  its true colours.

Garment geometry, textures and shop images are cached per garment: a pool
garment appears in several nearby samples.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from omfa.data.examples import LABELS
from omfa.data.garments import GarmentSpec
from omfa.data.people import Identity, IdentityLayers, identity_layers
from omfa.data.synthetic import SampleSpec, perturbed_pose
from omfa.data.tailor import OFFSET_M, Cloth, Layer, Tailor, place, vertex_normals
from omfa.gl import pyrender
from omfa.pose.body import PART_NAMES, Pose, PosedMesh, load_body
from omfa.pose.condition import POSE_CONDITIONS, pose_condition, sample_key
from omfa.pose.lowpoly import LowPolyBody
from omfa.pose.presets import PosePreset, load_presets
from omfa.pose.render import VIEW_CENTER_Y_M, VIEW_HEIGHT_M, PoseRenderer, face_texture

SHOP_FLATTEN = 0.12  # depth kept when a garment is laid flat
SHOP_FILL = 0.94  # share of the canvas the shop frame fills
_REPEAT, _CLAMP = 10497, 33071  # GL_REPEAT, GL_CLAMP_TO_EDGE


class LabelRenderer(PoseRenderer):
    """`PoseRenderer` plus segmentation renders of arbitrary meshes.

    Built on the parent's scene (camera, framing) and draw call, so label maps
    line up with `render` and `pose_map` by construction.
    """

    def render_labels(
        self, meshes: Sequence[pyrender.Mesh], labels: Sequence[int], yaw_deg: float, size_hw: Sequence[int]
    ) -> np.ndarray:
        """(H, W) uint8: the label of the nearest mesh at each pixel centre, 0 where empty."""
        size = (int(size_hw[0]), int(size_hw[1]))
        scene = self._scene([], yaw_deg, size, (0.0, 0.0, 0.0))
        seg = {}
        for mesh, label in zip(meshes, labels, strict=True):
            node = pyrender.Node(mesh=mesh)
            scene.add_node(node)
            seg[node] = np.array([label, label, label], dtype=np.uint8)
        color, _ = self._draw(scene, size, pyrender.RenderFlags.SEG, seg)
        return np.ascontiguousarray(color[..., 0])


@dataclass(frozen=True)
class Posed:
    """A posed low-poly body with what dressing needs: normals and rigid frames."""

    mesh: PosedMesh
    normals: np.ndarray  # (V, 3)
    frames: np.ndarray  # (len(FRAMES), 3, 4)


class _LRU(OrderedDict):
    """A small least-recently-used cache: `get_or_make(key, make)`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or_make(self, key: Hashable, make: Callable[[], object]) -> object:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return value


def srgb_to_linear(rgb: Sequence[int]) -> np.ndarray:
    """sRGB 0..255 -> linear 0..1 (pyrender lights in linear space and encodes the output)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


class FittingRoom:
    """Draws synthetic samples of `size_hw` (height, width) px. Owns an OpenGL context: one per process, reused.

    The size is the dataset's (`SynthConfig.size_hw`): every image, label map,
    mask and pose map of a sample is rendered at it.
    """

    def __init__(
        self, presets: dict[str, PosePreset] | None = None, cache_size: int = 256, *, size_hw: Sequence[int]
    ) -> None:
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self.body = LowPolyBody(load_body())
        self.tailor = Tailor(self.body)
        self.presets = presets if presets is not None else load_presets()
        self.renderer = LabelRenderer()
        self._clothes = _LRU(cache_size)
        self._shop = _LRU(cache_size)
        self._people = _LRU(64)
        self._texture_cache = _LRU(cache_size)
        self._face = pyrender.Texture(source=face_texture(), source_channels="RGB")
        self._shop_body = self.posed(Pose(np.zeros(3), _shop_pose()), None)
        self._shop_frames = {slot: self._shop_frame(slot) for slot in ("upper", "lower")}

    def close(self) -> None:
        """Free the OpenGL context."""
        self.renderer.close()

    # -- building blocks ------------------------------------------------------

    def posed(self, pose: Pose, shape: Sequence[float] | None) -> Posed:
        """The low-poly body in `pose` with `shape` (None: the mean shape), ready to dress."""
        mesh = self.body.posed(pose, None if shape is None else np.asarray(shape))
        vertices = mesh.vertices.astype(np.float64)
        return Posed(mesh, vertex_normals(vertices, mesh.faces), self.tailor.frames(mesh))

    def cloth(self, spec: GarmentSpec) -> Cloth:
        """The garment's cut, UVs and textures (cached)."""
        return self._clothes.get_or_make(spec, lambda: self.tailor.cloth(spec))  # type: ignore[return-value]

    def _texture(self, cloth: Cloth) -> pyrender.Texture:
        """The cloth's texture in this renderer's context (cached: uploads and mipmaps are costly)."""

        def make() -> pyrender.Texture:
            sampler = pyrender.Sampler(wrapS=_REPEAT, wrapT=_CLAMP)  # repeat around the body, clamp along it
            return pyrender.Texture(source=cloth.texture, source_channels="RGB", sampler=sampler)

        return self._texture_cache.get_or_make(cloth.spec, make)  # type: ignore[return-value]

    def people_layers(self, person: Identity) -> IdentityLayers:
        """The identity's hair and shoe geometry (cached)."""
        return self._people.get_or_make(person, lambda: identity_layers(self.tailor, person))  # type: ignore[return-value]

    def _mesh(
        self,
        layers: Sequence[Layer],
        posed: Posed,
        offset: float,
        cloth: Cloth | None = None,
        color: Sequence[int] | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> pyrender.Mesh:
        """One single-primitive mesh for layers of one label: the cloth's texture, or a flat colour.

        Single-sided (an armhole or neckline shows what is behind it); the
        skirt cone carries its inside as extra faces.
        """
        positions, normals, uvs, faces, count = [], [], [], [], 0
        for layer in layers:
            position, normal = place(layer, posed.mesh.vertices, posed.normals, posed.frames, offset)
            positions.append(position)
            normals.append(normal)
            uvs.append(layer.uv)
            faces.append(layer.faces + count)
            count += len(position)
        position = np.concatenate(positions)
        if transform is not None:
            position = transform(position)
        if cloth is None:
            material = pyrender.MetallicRoughnessMaterial(
                baseColorFactor=(*srgb_to_linear(color), 1.0), metallicFactor=0.0, roughnessFactor=0.7
            )
            texcoord = None
        else:
            material = pyrender.MetallicRoughnessMaterial(
                baseColorFactor=(1.0, 1.0, 1.0, 1.0),
                baseColorTexture=self._texture(cloth),
                metallicFactor=0.0,
                roughnessFactor=0.85,
            )
            texcoord = np.concatenate(uvs)
        primitive = pyrender.Primitive(
            positions=position,
            normals=np.concatenate(normals),
            texcoord_0=texcoord,
            indices=np.concatenate(faces).astype(np.uint32),
            material=material,
        )
        return pyrender.Mesh([primitive])

    def dressed(self, person: Identity, outfit: tuple[GarmentSpec, GarmentSpec], posed: Posed) -> tuple[list, list]:
        """pyrender meshes and their labels for a person wearing `outfit` in a pose."""
        upper, lower = self.cloth(outfit[0]), self.cloth(outfit[1])
        extras = self.people_layers(person)
        visible = ~(upper.covers | lower.covers | extras.covers)
        # Skin, with the pose renderer's face drawn on the front of the head (a
        # multiplier texture): it tells the front of the body from its back.
        skin = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=(*srgb_to_linear(person.skin), 1.0),
            metallicFactor=0.0,
            roughnessFactor=0.6,
            baseColorTexture=None if posed.mesh.face_uv is None else self._face,
        )
        meshes = [
            pyrender.Mesh(
                [
                    pyrender.Primitive(
                        positions=posed.mesh.vertices,
                        normals=posed.normals.astype(np.float32),
                        texcoord_0=posed.mesh.face_uv,
                        indices=posed.mesh.faces[visible].astype(np.uint32),
                        material=skin,
                    )
                ]
            )
        ]
        labels = [LABELS["skin"]]
        if extras.hair:
            meshes.append(self._mesh(extras.hair, posed, OFFSET_M["hair"], color=person.hair_color))
            labels.append(LABELS["hair"])
        if extras.shoes is not None:
            meshes.append(self._mesh([extras.shoes], posed, OFFSET_M["shoes"], color=person.shoe_color))
            labels.append(LABELS["shoes"])
        for slot, cloth in (("lower", lower), ("upper", upper)):
            meshes.append(self._mesh(cloth.layers, posed, OFFSET_M[slot], cloth=cloth))
            labels.append(LABELS[slot])
        return meshes, labels

    def person_image(
        self, person: Identity, outfit: tuple[GarmentSpec, GarmentSpec], posed: Posed, yaw_deg: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(RGB (H, W, 3) uint8 on white, labels (H, W) uint8) of a dressed person."""
        meshes, labels = self.dressed(person, outfit, posed)
        color, _ = self.renderer.render(meshes, yaw_deg, self.size_hw)
        return color, self.renderer.render_labels(meshes, labels, yaw_deg, self.size_hw)

    # -- shop images ----------------------------------------------------------

    def _shop_frame(self, slot: str) -> tuple[np.ndarray, float]:
        """(centre (3,), scale) mapping the slot's body area in the shop pose onto the canvas."""
        parts = {
            "upper": ("torso", "left_upper_arm", "left_forearm", "right_upper_arm", "right_forearm"),
            "lower": ("torso", "left_thigh", "left_shin", "right_thigh", "right_shin"),
        }[slot]
        labels = self.body.part_labels
        mask = np.isin(labels, [PART_NAMES.index(p) for p in parts])
        points = self._shop_body.mesh.vertices[mask].astype(np.float64)
        if slot == "lower":
            points = points[points[:, 1] <= self.tailor.y_navel + 0.02]
        lo, hi = points.min(axis=0), points.max(axis=0)
        width = (hi[0] - lo[0]) * (1.3 if slot == "lower" else 1.0)  # room for a flared skirt
        height, width_hw = self.size_hw
        view_w = VIEW_HEIGHT_M * width_hw / height
        scale = SHOP_FILL * min(VIEW_HEIGHT_M / (hi[1] - lo[1]), view_w / width)
        return (lo + hi) / 2, float(scale)

    def shop_image(self, spec: GarmentSpec) -> tuple[np.ndarray, np.ndarray]:
        """(RGB (H, W, 3) uint8 on white, garment mask (H, W) bool) of a garment laid flat (cached)."""
        return self._shop.get_or_make(spec, lambda: self._render_shop(spec))  # type: ignore[return-value]

    def _render_shop(self, spec: GarmentSpec) -> tuple[np.ndarray, np.ndarray]:
        cloth = self.cloth(spec)
        center, scale = self._shop_frames[spec.slot]

        def lay_flat(points: np.ndarray) -> np.ndarray:
            out = (points - center) * scale
            out[:, 2] *= SHOP_FLATTEN
            out[:, 1] += VIEW_CENTER_Y_M
            return out.astype(np.float32)

        mesh = self._mesh(cloth.layers, self._shop_body, OFFSET_M[spec.slot], cloth=cloth, transform=lay_flat)
        color, depth = self.renderer.render([mesh], 0.0, self.size_hw, flat=True)
        return color, depth > 0

    # -- samples --------------------------------------------------------------

    def render(self, spec: SampleSpec) -> dict:
        """Draw a planned sample into the dict stored by `omfa.data.shards` (see its docstring)."""
        person = spec.identity
        posed_ref = self.posed(
            perturbed_pose(self.presets[spec.view_ref.preset], spec.view_ref.perturbation_seed), person.shape
        )
        posed = self.posed(perturbed_pose(self.presets[spec.view.preset], spec.view.perturbation_seed), person.shape)
        sample: dict = {}
        sample["reference"], sample["labels_reference"] = self.person_image(
            person, spec.outfit_a, posed_ref, spec.view_ref.yaw_deg
        )
        sample["person"], sample["labels_person"] = self.person_image(person, spec.outfit_b, posed, spec.view.yaw_deg)
        sample["person_same"], sample["labels_person_same"] = self.person_image(
            person, spec.outfit_a, posed, spec.view.yaw_deg
        )
        for kind in POSE_CONDITIONS:  # every kind, so a model of either kind trains on the same samples
            for view, posed_view, yaw in (
                ("target", posed, spec.view.yaw_deg),
                ("reference", posed_ref, spec.view_ref.yaw_deg),
            ):
                sample[sample_key(kind, view)] = pose_condition(self.renderer, posed_view.mesh, yaw, self.size_hw, kind)
        for slot, index in (("upper", 0), ("lower", 1)):
            for outfit_name, outfit in (("a", spec.outfit_a), ("b", spec.outfit_b)):
                image, mask = self.shop_image(outfit[index])
                sample[f"{slot}_{outfit_name}"] = image
                sample[f"mask_{slot}_{outfit_name}"] = mask
        sample["meta"] = spec.meta()
        return sample


def _shop_pose() -> np.ndarray:
    """(21, 3) body_pose of the shop pose: arms 40 degrees down, legs slightly apart."""
    body = np.zeros((21, 3))
    body[15, 2], body[16, 2] = -0.7, 0.7  # shoulders: lower the arms
    body[0, 2], body[1, 2] = 0.1, -0.1  # hips: abduct the legs
    return body
