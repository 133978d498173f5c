"""Cutting a piece out of a triangle mesh along the zero line of a scalar field.

A garment is the part of the rest-pose body where a field is positive. The
cut is exact: triangles crossing the zero line are split where the
(piecewise-linear) field is zero, so edges are smooth lines, not the
saw-tooth of whole-triangle selection. Every vertex of the piece lies on an
edge of the original mesh, so it is stored as a pair (a, b, t):

    position = (1 - t) * V[a] + t * V[b]

which holds for any posed copy V of the mesh (the posed triangle is still a
flat triangle). Posing a piece then costs two gathers and a blend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Piece:
    """A cut-out of a mesh. Vertices are edge points of the source mesh.

    a, b: (N,) int64 source vertex indices; t: (N,) float64 in [0, 1] (0 for
    an original vertex, where a == b); faces: (M, 3) int64 into the N
    vertices, same winding as the source; source_face: (M,) source face of
    each output face.
    """

    a: np.ndarray
    b: np.ndarray
    t: np.ndarray
    faces: np.ndarray
    source_face: np.ndarray

    def interpolate(self, values: np.ndarray) -> np.ndarray:
        """Per-source-vertex values (V, ...) -> per-piece-vertex values (N, ...)."""
        t = self.t.reshape(-1, *([1] * (values.ndim - 1)))
        return (1.0 - t) * values[self.a] + t * values[self.b]


def cut(faces: np.ndarray, field: np.ndarray) -> Piece:
    """The part of the mesh where `field` > 0, with crossing triangles split exactly.

    faces: (F, 3) vertex indices; field: (V,) values at the vertices (linear
    inside each triangle). A triangle with one corner inside keeps a smaller
    triangle; one with two corners inside keeps a quad, split into two
    triangles. Edge points are shared between neighbouring triangles, so the
    piece stays connected where the source mesh is.
    """
    faces = np.asarray(faces, dtype=np.int64)
    field = np.asarray(field, dtype=np.float64)
    inside = field[faces] > 0  # (F, 3)
    count = inside.sum(axis=1)

    # Rotate each crossing triangle (keeping its cyclic order, hence its
    # winding) so that corner 0 is the odd one out: the single inside corner
    # when one is inside, the single outside corner when two are.
    odd = np.where(count == 1, np.argmax(inside, axis=1), np.argmin(inside, axis=1))
    rolled = np.stack([faces[np.arange(len(faces)), (odd + k) % 3] for k in range(3)], axis=1)

    full = np.flatnonzero(count == 3)
    one = np.flatnonzero(count == 1)
    two = np.flatnonzero(count == 2)

    # Edge points: one per crossed edge, keyed by its sorted vertex pair.
    p, q, r = (rolled[:, k] for k in range(3))
    crossed = np.concatenate(
        [
            np.stack([p[one], q[one]], 1),
            np.stack([p[one], r[one]], 1),
            np.stack([r[two], p[two]], 1),
            np.stack([p[two], q[two]], 1),
        ]
    )
    edges = np.sort(crossed, axis=1)
    unique_edges, edge_index = np.unique(edges, axis=0, return_inverse=True)
    edge_index = edge_index.reshape(-1)
    n1, n2 = len(one), len(two)
    e_pq1, e_pr1 = edge_index[:n1], edge_index[n1 : 2 * n1]
    e_rp2, e_pq2 = edge_index[2 * n1 : 2 * n1 + n2], edge_index[2 * n1 + n2 :]

    # Output vertex ids: original vertices first (only those used), then edge points.
    used = np.unique(np.concatenate([faces[full].ravel(), p[one], q[two], r[two]]))
    vertex_id = np.full(len(field), -1, dtype=np.int64)
    vertex_id[used] = np.arange(len(used))
    edge_id = len(used) + np.arange(len(unique_edges))

    tris = [
        vertex_id[faces[full]],
        np.stack([vertex_id[p[one]], edge_id[e_pq1], edge_id[e_pr1]], 1),
        # Quad q, r, edge(r,p), edge(p,q) of a triangle whose corner p is outside.
        np.stack([vertex_id[q[two]], vertex_id[r[two]], edge_id[e_rp2]], 1),
        np.stack([vertex_id[q[two]], edge_id[e_rp2], edge_id[e_pq2]], 1),
    ]
    source = np.concatenate([full, one, two, two])

    lo, hi = unique_edges[:, 0], unique_edges[:, 1]
    f_lo, f_hi = field[lo], field[hi]
    t_edge = f_lo / (f_lo - f_hi)  # zero of the linear field along lo -> hi
    return Piece(
        a=np.concatenate([used, lo]),
        b=np.concatenate([used, hi]),
        t=np.concatenate([np.zeros(len(used)), t_edge]),
        faces=np.concatenate(tris).astype(np.int64),
        source_face=source.astype(np.int64),
    )


def covered_faces(faces: np.ndarray, field: np.ndarray) -> np.ndarray:
    """(F,) bool: triangles whose three corners are strictly inside (field > 0)."""
    return np.all(np.asarray(field)[faces] > 0, axis=1)


def unweld(piece: Piece, corner_uv: np.ndarray, corner_key: np.ndarray) -> tuple[Piece, np.ndarray]:
    """Give each face corner its own texture coordinate, duplicating vertices where needed.

    corner_uv: (M, 3, 2) UV of every face corner; corner_key: (M, 3) int, an
    extra key that must match for two corners to share a vertex (the texture
    panel and seam copy). Returns the re-indexed piece and (N', 2) UVs.
    """
    m = len(piece.faces)
    flat_vertex = piece.faces.reshape(-1)
    flat_uv = corner_uv.reshape(-1, 2)
    keys = np.stack([flat_vertex, corner_key.reshape(-1)], axis=1)
    unique_keys, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    source_vertex = unique_keys[:, 0]
    return (
        Piece(
            a=piece.a[source_vertex],
            b=piece.b[source_vertex],
            t=piece.t[source_vertex],
            faces=inverse.reshape(m, 3),
            source_face=piece.source_face,
        ),
        flat_uv[first],
    )
