"""A lighter copy of a body mesh for fast data generation.

At the 128x96 canvas a person is about 96 px tall: the mannequin's 48k
triangles are far below a pixel, and Mesa's software rasteriser spends its
time on triangle setup. `LowPolyBody` keeps a fixed subset of the body's
vertices (quadric decimation to about 10k triangles, each new vertex snapped
to the nearest original one) so a posed low-poly mesh is just
`posed.vertices[kept]`: the same skinning, the same grounding, no second body
model. Every image of a synthetic sample (person renders, label maps and
pose maps) uses this one mesh, so they line up pixel for pixel; its pose map
differs from the full mesh's only along part edges (about 2% of the body's
pixels, 1 px).
"""

from __future__ import annotations

import numpy as np

from omfa.pose.body import Body, Pose, PosedMesh

DEFAULT_FACES = 10_000


class LowPolyBody:
    """Poses `body` and keeps the decimated subset (same API subset: `posed`, `rest`).

    faces, part_labels, strongest_joint: arrays of the low-poly mesh, fixed
    objects (the pose renderer caches its part split by their identity).
    """

    def __init__(self, body: Body, target_faces: int = DEFAULT_FACES) -> None:
        import fast_simplification
        from scipy.spatial import cKDTree

        self.body = body
        rest = body.rest()
        vertices = rest.vertices.astype(np.float64)
        faces = np.asarray(rest.faces, dtype=np.int64)
        if target_faces >= len(faces):
            kept, new_faces = np.arange(len(vertices)), faces
        else:
            points, simple_faces = fast_simplification.simplify(vertices, faces, target_count=int(target_faces))
            # Snap to original vertices so the subset can be posed by indexing.
            _, nearest = cKDTree(vertices).query(points)
            snapped = nearest[simple_faces]
            a, b, c = snapped.T
            snapped = snapped[(a != b) & (b != c) & (a != c)]  # drop triangles that collapsed
            _, first = np.unique(np.sort(snapped, axis=1), axis=0, return_index=True)
            snapped = snapped[np.sort(first)]  # and duplicates
            kept, inverse = np.unique(snapped, return_inverse=True)
            new_faces = inverse.reshape(-1, 3)
        self.kept = kept  # (V',) indices into the full mesh
        self.faces = np.ascontiguousarray(new_faces, dtype=np.int32)
        self.part_labels = np.asarray(body.part_labels)[kept]
        self.strongest_joint = np.asarray(body.strongest_joint)[kept]
        # Surface coordinates for the dense pose condition: the rest body (mean
        # shape) scaled into [0, 1] per axis, fixed per vertex whatever the pose or shape.
        rest_kept = vertices[kept]
        low, high = rest_kept.min(axis=0), rest_kept.max(axis=0)
        self.surface = ((rest_kept - low) / (high - low)).astype(np.float32)

    def posed(self, pose: Pose, shape: np.ndarray | None = None) -> PosedMesh:
        """The low-poly body in `pose` (grounded like the full body)."""
        full = self.body.posed(pose, shape)
        face_uv = None if full.face_uv is None else full.face_uv[self.kept]
        return PosedMesh(
            full.vertices[self.kept], self.faces, self.part_labels, full.joints, face_uv=face_uv, surface=self.surface
        )

    def rest(self, shape: np.ndarray | None = None) -> PosedMesh:
        """The rest T-pose, same vertex order as `posed`."""
        return self.posed(Pose.zero(), shape)
