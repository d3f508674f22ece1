"""Per-point normals: from mesh faces when a mesh exists, else by local PCA.

Coordinates are centred in float64 before anything, so scenes hundreds of
metres from the origin (georeferenced scans) lose no precision in the
cross products and covariances below.

Orientation rule of :func:`orient_normals` (PCA normals have no sign of
their own); the scene is z-up, as ScanNet is:

- a normal within 45 degrees of vertical points up (``+z``): floors, table
  and bed tops, seats;
- any other normal points towards the vertical axis through the centre of
  the scene's bounding box: walls point into the room.

It is deterministic and needs no viewpoint. Known limits: ceilings and the
undersides of furniture also point up (away from the room), and the sides of
furniture that face away from the room centre point into the furniture;
mesh normals, which keep the mesh's winding, have neither limit.
"""
import numpy as np
from scipy.spatial import cKDTree

__all__ = ['mesh_vertex_normals', 'pca_normals', 'orient_normals',
           'compute_normals']

_CHUNK = 65536  # points per PCA chunk: bounds the (chunk, k, 3) buffers


def mesh_vertex_normals(coord, faces):
    """Area-weighted vertex normals of a triangle mesh.

    Args:
        coord (N, 3): vertex positions.
        faces (F, 3) int: vertex indices of each triangle, counter-clockwise
            seen from the side the normal should point to.

    Returns:
        normal (N, 3) float32 unit vectors (zero where a vertex has no
        non-degenerate face), valid (N,) bool.
    """
    xyz = np.asarray(coord, dtype=np.float64)
    xyz = xyz - xyz.mean(0)
    faces = np.asarray(faces, dtype=np.int64)
    n = xyz.shape[0]
    v0, v1, v2 = xyz[faces[:, 0]], xyz[faces[:, 1]], xyz[faces[:, 2]]
    # |cross| is twice the triangle area: summing raw cross products is the
    # area weighting.
    fn = np.cross(v1 - v0, v2 - v0)
    flat = faces.ravel()
    vn = np.stack([np.bincount(flat, weights=np.repeat(fn[:, c], 3),
                               minlength=n) for c in range(3)], 1)
    norm = np.linalg.norm(vn, axis=1)
    valid = norm > 1e-20
    vn[valid] /= norm[valid, None]
    vn[~valid] = 0
    return vn.astype(np.float32), valid


def pca_normals(coord, k=16, workers=1):
    """Unoriented normals: smallest-eigenvalue direction of the covariance
    of each point's ``k`` nearest neighbours (the point included).

    Args:
        coord (N, 3): positions (any float dtype; centred in float64 here).
        k: neighbourhood size (clipped to N).
        workers: threads for the kd-tree query (1 keeps it on one core).

    Returns:
        normal (N, 3) float32 unit vectors, sign arbitrary (see
        :func:`orient_normals`).
    """
    xyz = np.asarray(coord, dtype=np.float64)
    xyz = xyz - xyz.mean(0)
    n = xyz.shape[0]
    out = np.zeros((n, 3), dtype=np.float32)
    if n < 3:
        out[:, 2] = 1
        return out
    k = int(min(k, n))
    # Put the points in kd-tree leaf order first: consecutive queries then
    # walk the same nodes and gather nearby memory, which halves the query
    # time against input order (random for many files).
    perm = cKDTree(xyz, balanced_tree=False).indices
    xyz = xyz[perm]
    tree = cKDTree(xyz, balanced_tree=False)
    iu = np.triu_indices(3)
    res = np.empty((n, 3), dtype=np.float32)
    for s in range(0, n, _CHUNK):
        _, idx = tree.query(xyz[s:s + _CHUNK], k=k, workers=workers)
        nb = xyz[idx]                          # (C, k, 3)
        nb -= nb.mean(1, keepdims=True)
        # the six distinct covariance entries, then a symmetric (C, 3, 3)
        cov = np.empty((nb.shape[0], 3, 3))
        for a, b in zip(*iu):
            cov[:, a, b] = cov[:, b, a] = np.einsum(
                'ck,ck->c', nb[:, :, a], nb[:, :, b])
        _, vec = np.linalg.eigh(cov)           # ascending eigenvalues
        res[s:s + _CHUNK] = vec[:, :, 0]
    out[perm] = res
    return out


def orient_normals(coord, normal, up_angle=45.0):
    """Flip normals to the rule in the module docstring.

    Args:
        coord (N, 3): positions (z up).
        normal (N, 3): unit normals of any sign.
        up_angle: normals within this many degrees of vertical point up.

    Returns:
        normal (N, 3) float32, oriented.
    """
    xyz = np.asarray(coord, dtype=np.float64)
    nrm = np.asarray(normal, dtype=np.float32).copy()
    if xyz.shape[0] == 0:
        return nrm
    centre = (xyz.min(0) + xyz.max(0)) / 2
    vertical = np.abs(nrm[:, 2]) >= np.cos(np.deg2rad(up_angle))
    inward = (centre[None, :2] - xyz[:, :2]).astype(np.float32)
    flip = np.where(vertical, nrm[:, 2] < 0,
                    np.einsum('ij,ij->i', nrm[:, :2], inward) < 0)
    nrm[flip] *= -1
    return nrm


def compute_normals(coord, faces=None, k=16, workers=1):
    """Normals of a scene: mesh normals where faces exist, oriented PCA
    normals elsewhere (no faces, or vertices that touch no face).

    Args:
        coord (N, 3): positions.
        faces (F, 3) int or None: triangles.

    Returns:
        (normal (N, 3) float32, source) with source ``'mesh'``, ``'pca'`` or
        ``'mesh+pca'``.
    """
    coord = np.asarray(coord, dtype=np.float64)
    if faces is not None and len(faces):
        nrm, valid = mesh_vertex_normals(coord, faces)
        if valid.all():
            return nrm, 'mesh'
        pca = orient_normals(coord, pca_normals(coord, k, workers))
        nrm[~valid] = pca[~valid]
        return nrm, 'mesh+pca'
    return orient_normals(coord, pca_normals(coord, k, workers)), 'pca'
