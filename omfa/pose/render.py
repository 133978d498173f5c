"""Rendering posed bodies: pose condition maps, gallery thumbnails, GLB files.

One fixed camera serves every render, so a person image rendered by the data
generator (`PoseRenderer.render`) lines up pixel for pixel with the pose map
of the same mesh and yaw:

- perspective pinhole camera `CAMERA_DISTANCE_M` from the vertical axis
  through the pelvis (bodies are grounded by `omfa.pose.body`), looking
  horizontally (no tilt, so verticals stay vertical);
- the frame spans `VIEW_HEIGHT_M` metres vertically at that axis, from
  `FLOOR_MARGIN_M` below the floor upwards, for every image size; the width
  follows the image's aspect ratio. In a 128x96 image a 1.72 m body is
  about 96 px tall and a T-pose (1.64 m wide) still fits;
- `yaw_deg` orbits the camera around the vertical axis: 0 looks at the front
  of the body, 90 shows the body's left side, 180 its back, -90 its right side.

Colours: `PART_COLORS[i]` is the pose-map colour of `PART_NAMES[i]` (black
background); warm hues for the body's left limbs, cool hues for its right, so
the map says which side faces the camera.
"""

from __future__ import annotations

import functools
import io
import math
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from omfa.gl import pyrender
from omfa.pose.body import FACE_BOX_M, PART_NAMES, PosedMesh

CAMERA_DISTANCE_M = 5.0
VIEW_HEIGHT_M = 2.3
FLOOR_MARGIN_M = 0.08
VIEW_CENTER_Y_M = VIEW_HEIGHT_M / 2 - FLOOR_MARGIN_M
YFOV_RAD = 2.0 * math.atan(VIEW_HEIGHT_M / 2 / CAMERA_DISTANCE_M)
Z_NEAR_M, Z_FAR_M = 1.0, 10.0
THUMBNAIL_HW = (256, 256)
INITIAL_VIEWPORT_WH = (256, 256)
THUMBNAIL_BACKGROUND = (0.95, 0.95, 0.95)

PART_COLORS: dict[str, tuple[int, int, int]] = {
    "head": (240, 220, 60),
    "neck": (150, 110, 60),
    "torso": (50, 70, 210),
    "left_upper_arm": (220, 30, 30),
    "left_forearm": (255, 120, 50),
    "left_hand": (255, 195, 130),
    "right_upper_arm": (30, 160, 40),
    "right_forearm": (120, 220, 80),
    "right_hand": (190, 250, 160),
    "left_thigh": (170, 30, 140),
    "left_shin": (230, 90, 210),
    "left_foot": (255, 175, 245),
    "right_thigh": (20, 120, 170),
    "right_shin": (50, 195, 235),
    "right_foot": (165, 235, 255),
}
PALETTE = np.array([PART_COLORS[name] for name in PART_NAMES], dtype=np.uint8)  # (P, 3)


class RenderSizeError(ValueError):
    """An image size the renderer cannot produce."""


def _check_size(size_hw: Sequence[int]) -> tuple[int, int]:
    height, width = (int(v) for v in size_hw)
    if not (8 <= height <= 4096 and 8 <= width <= 4096):
        raise RenderSizeError(f"render size {height}x{width} px is out of range; use 8 to 4096 px per side")
    return height, width


def camera_pose(yaw_deg: float) -> np.ndarray:
    """(4, 4) camera-to-world transform (OpenGL camera: looks along its -z)."""
    yaw = math.radians(yaw_deg)
    c, s = math.cos(yaw), math.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]  # rotation about +y by yaw
    pose[:3, 3] = [CAMERA_DISTANCE_M * s, VIEW_CENTER_Y_M, CAMERA_DISTANCE_M * c]
    return pose


def project(points: np.ndarray, yaw_deg: float, size_hw: Sequence[int]) -> np.ndarray:
    """World points (N, 3) -> (N, 3): pixel x (right), pixel y (down), depth in metres.

    Pixel coordinates are continuous: pixel (row i, column j) covers
    [j, j + 1) x [i, i + 1), so its centre is (j + 0.5, i + 0.5).
    """
    height, width = _check_size(size_hw)
    pose = camera_pose(yaw_deg)
    local = (np.asarray(points, dtype=np.float64) - pose[:3, 3]) @ pose[:3, :3]  # world -> camera
    depth = -local[:, 2]
    focal = (height / 2) / math.tan(YFOV_RAD / 2)  # pixels
    x = width / 2 + focal * local[:, 0] / depth
    y = height / 2 - focal * local[:, 1] / depth
    return np.stack([x, y, depth], axis=1)


def unproject_ray(xy: Sequence[float], yaw_deg: float, size_hw: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (x, y) -> (origin (3,), unit direction (3,)) of its viewing ray in the world."""
    height, width = _check_size(size_hw)
    focal = (height / 2) / math.tan(YFOV_RAD / 2)
    direction = np.array([(xy[0] - width / 2) / focal, -(xy[1] - height / 2) / focal, -1.0])
    pose = camera_pose(yaw_deg)
    direction = pose[:3, :3] @ direction
    return pose[:3, 3].copy(), direction / np.linalg.norm(direction)


def _face_groups(faces: np.ndarray, labels: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Split faces by part (majority of their three vertex labels).

    Returns (part index, vertex indices used, faces re-indexed into them) per part.
    """
    corner = labels[faces]  # (F, 3)
    # A face takes the label two of its corners share, else its first corner's.
    face_label = np.where(corner[:, 1] == corner[:, 2], corner[:, 1], corner[:, 0])
    groups = []
    for part in range(len(PART_NAMES)):
        part_faces = faces[face_label == part]
        if len(part_faces) == 0:
            continue
        used, local = np.unique(part_faces, return_inverse=True)
        groups.append((part, used, local.reshape(-1, 3).astype(np.uint32)))
    return groups


@functools.lru_cache(maxsize=1)
def face_texture(size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8 multiplier texture: a simple face in the left half, white elsewhere.

    Drawn as seen from the front (image right = the body's left) in the head
    box FACE_BOX_M; features sit at typical head proportions.
    """
    from PIL import Image, ImageDraw

    x0, x1, y0, y1 = FACE_BOX_M
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)

    def px(x: float, y: float) -> tuple[float, float]:  # head-local metres -> texture pixels
        return (x - x0) / (x1 - x0) * size / 2, (y1 - y) / (y1 - y0) * size

    def ellipse(x: float, y: float, rx: float, ry: float, fill: tuple[int, int, int]) -> None:
        (a, b), (c, d) = px(x - rx, y + ry), px(x + rx, y - ry)
        draw.ellipse([a, b, c, d], fill=fill)

    for side in (-1.0, 1.0):
        ellipse(side * 0.032, 0.060, 0.016, 0.006, (120, 90, 70))  # brow
        ellipse(side * 0.032, 0.040, 0.014, 0.008, (250, 250, 250))  # eye white
        ellipse(side * 0.032, 0.040, 0.007, 0.007, (40, 30, 30))  # iris
    ellipse(0.0, 0.000, 0.012, 0.008, (215, 170, 150))  # nose shadow
    ellipse(0.0, -0.035, 0.022, 0.008, (200, 80, 80))  # lips
    return np.asarray(image)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3)."""
    v = vertices.astype(np.float64)
    face_normals = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    normals = np.zeros_like(v)
    for k in range(3):
        normals += np.stack([np.bincount(faces[:, k], face_normals[:, i], len(v)) for i in range(3)], axis=1)
    return (normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def release_renderer(renderer: pyrender.OffscreenRenderer) -> None:
    """Free one offscreen renderer's GL resources and context, and nothing else.

    pyrender's own `delete()` ends with `eglTerminate` on the process-wide EGL
    display, which breaks every other live renderer in the process (a server
    or a test session holds several). Here only this renderer's context is
    destroyed; the display stays initialised for the others.
    """
    platform = renderer._platform
    platform.make_current()
    renderer._renderer.delete()
    context = getattr(platform, "_egl_context", None)
    if context is None:  # not EGL (osmesa, pyglet): its own teardown is per context
        platform.delete_context()
    else:
        from OpenGL import EGL

        display = platform._egl_display
        EGL.eglMakeCurrent(display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
        EGL.eglDestroyContext(display, context)
        platform._egl_context = None
        platform._egl_display = None  # the platform's __del__ would eglTerminate it
    # The renderer's __del__ would call delete() again, and with it eglTerminate: disarm it.
    renderer._renderer = None
    renderer._platform = None


class PoseRenderer:
    """Owns one offscreen OpenGL context; create once and reuse for every render.

    Calls are serialised by a lock: one context renders one image at a time.
    """

    def __init__(self) -> None:
        # The viewport is set per draw (every render names its size); this is only the first one.
        self._renderer = pyrender.OffscreenRenderer(*INITIAL_VIEWPORT_WH)
        self._lock = threading.Lock()
        self._groups_key: tuple[np.ndarray, np.ndarray] | None = None
        self._groups: list[tuple[int, np.ndarray, np.ndarray]] = []

    def close(self) -> None:
        """Free the OpenGL context (the renderer cannot be used afterwards)."""
        if self._renderer is not None:
            release_renderer(self._renderer)
            self._renderer = None

    def __del__(self) -> None:
        # A renderer dropped without close() must not take the shared EGL display with
        # it (pyrender's own __del__ would eglTerminate it): free just this context, or,
        # on a thread where it cannot be made current, leave it to the process's exit.
        renderer = getattr(self, "_renderer", None)
        if renderer is None:
            return
        try:
            release_renderer(renderer)
        except Exception:
            platform = getattr(renderer, "_platform", None)
            if platform is not None and hasattr(platform, "_egl_display"):
                platform._egl_display = None
        self._renderer = None

    def __enter__(self) -> PoseRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scene(self, meshes: Sequence[pyrender.Mesh], yaw_deg: float, size_hw: tuple[int, int], bg) -> pyrender.Scene:
        height, width = size_hw
        scene = pyrender.Scene(bg_color=(*bg, 1.0), ambient_light=(0.35, 0.35, 0.35))
        for mesh in meshes:
            scene.add(mesh)
        camera = pyrender.PerspectiveCamera(yfov=YFOV_RAD, aspectRatio=width / height, znear=Z_NEAR_M, zfar=Z_FAR_M)
        cam_pose = camera_pose(yaw_deg)
        scene.add(camera, pose=cam_pose)
        # Lights move with the camera, like a photographer's: a key light from
        # above and to the camera's left, and a weaker fill from its right.
        for direction, intensity in (((-0.5, 0.8, 1.0), 2.6), ((0.6, 0.1, 1.0), 1.0)):
            scene.add(
                pyrender.DirectionalLight(color=np.ones(3), intensity=intensity),
                pose=cam_pose @ _look_along(-np.asarray(direction)),
            )
        return scene

    def _draw(self, scene: pyrender.Scene, size_hw: tuple[int, int], flags, seg_node_map=None):
        height, width = size_hw
        with self._lock:
            if self._renderer is None:
                raise RuntimeError("PoseRenderer was closed; create a new one")
            self._renderer.viewport_width, self._renderer.viewport_height = width, height
            return self._renderer.render(scene, flags=flags, seg_node_map=seg_node_map)

    def render(
        self,
        meshes: Sequence[pyrender.Mesh],
        yaw_deg: float,
        size_hw: Sequence[int],
        *,
        flat: bool = False,
        background: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render pyrender meshes with the pose-map camera and the fixed lights.

        flat=True shows colours unlit (for label maps and textures as they are).
        Returns color uint8 (H, W, 3) on `background` (white) and depth float32
        (H, W) in metres along the view axis, 0 where nothing was drawn.
        """
        size = _check_size(size_hw)
        scene = self._scene(meshes, yaw_deg, size, tuple(background))
        flags = pyrender.RenderFlags.FLAT if flat else pyrender.RenderFlags.NONE
        color, depth = self._draw(scene, size, flags)
        return np.ascontiguousarray(color[..., :3]), depth.astype(np.float32)

    def pose_map(self, mesh: PosedMesh, yaw_deg: float, size_hw: Sequence[int]) -> np.ndarray:
        """The pose condition map: (H, W, 3) uint8 flat PART_COLORS on black.

        Rendered as a segmentation (no lighting, no anti-aliasing), so every
        pixel is exactly black or one palette colour.
        """
        size = _check_size(size_hw)
        seg_map = {}
        meshes = []
        for part, used, local_faces in self._part_groups(mesh):
            primitive = pyrender.Primitive(positions=mesh.vertices[used], indices=local_faces)
            node = pyrender.Node(mesh=pyrender.Mesh([primitive]))
            seg_map[node] = PALETTE[part]
            meshes.append(node)
        scene = self._scene([], yaw_deg, size, (0.0, 0.0, 0.0))
        for node in meshes:
            scene.add_node(node)
        color, _ = self._draw(scene, size, pyrender.RenderFlags.SEG, seg_map)
        return np.ascontiguousarray(color[..., :3])

    def surface_map(self, mesh: PosedMesh, yaw_deg: float, size_hw: Sequence[int]) -> np.ndarray:
        """The dense-correspondence pose condition: (H, W, 3) uint8 on black.

        Each body pixel shows, as RGB, where on the rest body (T-pose, mean
        shape) the surface under it lies: x (the body's left) as red, height as
        green, front-back depth as blue (`PosedMesh.surface`). As DensePose
        does for photos, this tells the model for every pixel which point of a
        garment belongs there, which the flat part colours of `pose_map` cannot.
        Rendered unlit, so each pixel is the interpolated coordinate itself.
        """
        if mesh.surface is None:
            raise ValueError("this mesh has no surface coordinates; pose the body with omfa.pose.lowpoly.LowPolyBody")
        size = _check_size(size_hw)
        colors = np.concatenate([mesh.surface, np.ones((len(mesh.surface), 1))], axis=1).astype(np.float32)
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0), metallicFactor=0.0)
        primitive = pyrender.Primitive(
            positions=mesh.vertices, color_0=colors, indices=mesh.faces.astype(np.uint32), material=material
        )
        scene = self._scene([pyrender.Mesh([primitive])], yaw_deg, size, (0.0, 0.0, 0.0))
        color, _ = self._draw(scene, size, pyrender.RenderFlags.FLAT)
        return np.ascontiguousarray(color[..., :3])

    def thumbnail(self, mesh: PosedMesh, yaw_deg: float = 0.0, size_hw: Sequence[int] = THUMBNAIL_HW) -> np.ndarray:
        """A shaded gallery image (H, W, 3) uint8: pastel part colours on light grey, with a face."""
        colors = 0.55 * PALETTE[mesh.part_labels] / 255.0 + 0.45 * 0.8  # soften towards grey
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=(1.0, 1.0, 1.0, 1.0), roughnessFactor=0.8, metallicFactor=0.0
        )
        if mesh.face_uv is not None:
            material.baseColorTexture = pyrender.Texture(source=face_texture(), source_channels="RGB")
        primitive = pyrender.Primitive(
            positions=mesh.vertices,
            normals=_vertex_normals(mesh.vertices, mesh.faces),
            color_0=np.concatenate([colors, np.ones((len(colors), 1))], axis=1).astype(np.float32),
            texcoord_0=mesh.face_uv,
            indices=mesh.faces.astype(np.uint32),
            material=material,
        )
        color, _ = self.render([pyrender.Mesh([primitive])], yaw_deg, size_hw, background=THUMBNAIL_BACKGROUND)
        return color

    def _part_groups(self, mesh: PosedMesh) -> list[tuple[int, np.ndarray, np.ndarray]]:
        # Faces and labels are constant per body backend: split them once.
        key = self._groups_key
        if key is None or key[0] is not mesh.faces or key[1] is not mesh.part_labels:
            self._groups = _face_groups(mesh.faces, mesh.part_labels)
            self._groups_key = (mesh.faces, mesh.part_labels)
        return self._groups


def _look_along(direction: np.ndarray) -> np.ndarray:
    """(4, 4) pose whose -z axis points along `direction` (for directional lights)."""
    forward = direction / np.linalg.norm(direction)
    z = -forward
    x = np.cross([0.0, 1.0, 0.0], z)
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-6 else np.array([1.0, 0.0, 0.0])
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    return pose


def export_glb(mesh: PosedMesh, path: str | Path | None = None) -> bytes:
    """The mesh as binary glTF coloured by part (for gr.Model3D); also written to `path` if given."""
    import trimesh

    colors = np.concatenate([PALETTE[mesh.part_labels], np.full((len(mesh.vertices), 1), 255, np.uint8)], axis=1)
    tri = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colors, process=False)
    buffer = io.BytesIO()
    tri.export(buffer, file_type="glb")
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
