"""Synthetic indoor rooms: demo and test data with known normals and labels.

A room is a floor, four walls, a partial ceiling (open over part of the room
so top views show the furniture), a door, a window and a picture on the
walls, and furniture built from boxes (tables, desks, beds, cabinets,
bookshelves, sofas, chairs, counters, refrigerators) and cylinders (round
tables, bins). Points are sampled uniformly by area on these surfaces, so
every point has an analytic normal (pointing out of the solid, into the
room) and a ScanNet-20 label (:data:`readers.SCANNET20_CLASSES`; the
ceiling, a class ScanNet-20 lacks, is -1).

:func:`write_synthetic_dataset` writes rooms in one of the *input* layouts,
so demo data takes the same preparation path as real data.
"""
import os

import numpy as np

from .ply import write_ply
from .readers import SCANNET20_NYU40_IDS, SPLIT_FILES

__all__ = ['make_room', 'write_synthetic_dataset']

WALL, FLOOR, CABINET, BED, CHAIR, SOFA, TABLE, DOOR, WINDOW, BOOKSHELF, \
    PICTURE, COUNTER, DESK, CURTAIN, FRIDGE, SHOWER, TOILET, SINK, BATHTUB, \
    OTHER = range(20)
CEILING = -1

# base colour (RGB 0..255) per label; objects jitter around it
_COLOURS = {
    WALL: (200, 195, 185), FLOOR: (140, 100, 70), CEILING: (230, 230, 230),
    CABINET: (120, 80, 50), BED: (90, 110, 160), CHAIR: (60, 60, 60),
    SOFA: (150, 60, 60), TABLE: (170, 130, 90), DOOR: (110, 70, 40),
    WINDOW: (170, 210, 240), BOOKSHELF: (100, 70, 45),
    PICTURE: (200, 160, 60), COUNTER: (210, 210, 200), DESK: (160, 120, 80),
    FRIDGE: (235, 235, 235), OTHER: (80, 140, 90),
}


class _Surfaces:
    """Accumulates rectangles and cylinders of one room."""

    def __init__(self, rng):
        self.rng = rng
        self.rect = []   # (origin, u, v, normal, label, colour)
        self.cyl = []    # (cx, cy, z0, h, r, label, colour)
        self.disc = []   # (cx, cy, z, r, label, colour)

    def colour(self, label):
        base = np.array(_COLOURS.get(label, (128, 128, 128)), float)
        return np.clip(base + self.rng.normal(0, 15, 3), 0, 255)

    def add_rect(self, o, u, v, n, label, colour=None):
        colour = self.colour(label) if colour is None else colour
        self.rect.append((np.asarray(o, float), np.asarray(u, float),
                          np.asarray(v, float), np.asarray(n, float), label,
                          colour))

    def add_box(self, lo, hi, label, colour=None, bottom=False):
        """Axis-aligned box with outward normals (no bottom face by
        default: it sits on the floor and is never seen)."""
        colour = self.colour(label) if colour is None else colour
        (x0, y0, z0), (x1, y1, z1) = lo, hi
        dx, dy, dz = x1 - x0, y1 - y0, z1 - z0
        self.add_rect((x0, y0, z1), (dx, 0, 0), (0, dy, 0), (0, 0, 1),
                      label, colour)
        if bottom:
            self.add_rect((x0, y0, z0), (dx, 0, 0), (0, dy, 0), (0, 0, -1),
                          label, colour)
        self.add_rect((x0, y0, z0), (0, dy, 0), (0, 0, dz), (-1, 0, 0),
                      label, colour)
        self.add_rect((x1, y0, z0), (0, dy, 0), (0, 0, dz), (1, 0, 0),
                      label, colour)
        self.add_rect((x0, y0, z0), (dx, 0, 0), (0, 0, dz), (0, -1, 0),
                      label, colour)
        self.add_rect((x0, y1, z0), (dx, 0, 0), (0, 0, dz), (0, 1, 0),
                      label, colour)

    def add_cylinder(self, cx, cy, z0, h, r, label, colour=None):
        colour = self.colour(label) if colour is None else colour
        self.cyl.append((cx, cy, z0, h, r, label, colour))
        self.disc.append((cx, cy, z0 + h, r, label, colour))

    def sample(self, n):
        """Sample ``n`` points by area; returns coord, normal, label,
        colour arrays."""
        rng = self.rng
        R = len(self.rect)
        o, u, v, nr, lab_r, col_r = (np.array(x) for x in zip(*self.rect))
        area_r = np.linalg.norm(np.cross(u, v), axis=1)
        cyl = np.array([c[:5] for c in self.cyl]).reshape(-1, 5)
        disc = np.array([d[:4] for d in self.disc]).reshape(-1, 4)
        area_c = 2 * np.pi * cyl[:, 4] * cyl[:, 3]
        area_d = np.pi * disc[:, 3] ** 2
        area = np.concatenate([area_r, area_c, area_d])
        labels = np.concatenate([lab_r, [c[5] for c in self.cyl],
                                 [d[4] for d in self.disc]]).astype(np.int16)
        cols = np.concatenate([col_r.reshape(-1, 3),
                               np.array([c[6] for c in self.cyl]).reshape(
                                   -1, 3),
                               np.array([d[5] for d in self.disc]).reshape(
                                   -1, 3)])
        counts = rng.multinomial(n, area / area.sum())
        surf = np.repeat(np.arange(area.size), counts)
        C = len(self.cyl)
        coord = np.empty((n, 3))
        normal = np.empty((n, 3))
        # rectangles
        m = surf < R
        s = surf[m]
        a, b = rng.random((2, s.size, 1))
        coord[m] = o[s] + a * u[s] + b * v[s]
        normal[m] = nr[s]
        # cylinder sides: radial normals
        m = (surf >= R) & (surf < R + C)
        s = surf[m] - R
        t = rng.random(s.size) * 2 * np.pi
        hz = rng.random(s.size)
        cx, cy, z0, h, r = cyl[s].T
        coord[m] = np.stack([cx + r * np.cos(t), cy + r * np.sin(t),
                             z0 + hz * h], 1)
        normal[m] = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], 1)
        # cylinder tops: uniform on the disc (sqrt for uniform area)
        m = surf >= R + C
        s = surf[m] - R - C
        t = rng.random(s.size) * 2 * np.pi
        rr = np.sqrt(rng.random(s.size))
        cx, cy, z, r = disc[s].T
        coord[m] = np.stack([cx + r * rr * np.cos(t), cy + r * rr * np.sin(t),
                             z], 1)
        normal[m] = (0, 0, 1)
        return coord, normal, labels[surf], cols[surf]


def _overlaps(fp, placed, gap=0.1):
    x0, y0, x1, y1 = fp
    return any(x0 < b[2] + gap and b[0] < x1 + gap and y0 < b[3] + gap
               and b[1] < y1 + gap for b in placed)


# (label, footprint w, d, height, against a wall, builder kind)
_CATALOGUE = [
    (TABLE, 1.2, 0.8, 0.75, False, 'table'),
    (DESK, 1.4, 0.7, 0.75, True, 'table'),
    (BED, 2.0, 1.6, 0.55, True, 'box'),
    (CABINET, 0.8, 0.5, 1.8, True, 'box'),
    (BOOKSHELF, 1.0, 0.35, 2.0, True, 'box'),
    (SOFA, 2.0, 0.9, 0.85, True, 'sofa'),
    (CHAIR, 0.5, 0.5, 0.9, False, 'chair'),
    (COUNTER, 1.8, 0.6, 0.9, True, 'box'),
    (FRIDGE, 0.7, 0.7, 1.8, True, 'box'),
    (OTHER, 0.4, 0.4, 0.45, False, 'bin'),
    (TABLE, 1.0, 1.0, 0.72, False, 'round_table'),
]


def _add_furniture(S, kind, label, x0, y0, w, d, h, facing):
    """One piece of furniture on footprint ``[x0, x0+w] x [y0, y0+d]``.

    ``facing`` (0..3) is the side of the footprint the backrest of a sofa
    or chair is on: 0 -y, 1 +x, 2 +y, 3 -x.
    """
    x1, y1 = x0 + w, y0 + d
    col = S.colour(label)
    if kind == 'box':
        S.add_box((x0, y0, 0), (x1, y1, h), label, col)
    elif kind == 'table':
        t, leg = 0.05, 0.06
        S.add_box((x0, y0, h - t), (x1, y1, h), label, col, bottom=True)
        for lx, ly in ((x0, y0), (x1 - leg, y0), (x0, y1 - leg),
                       (x1 - leg, y1 - leg)):
            S.add_box((lx, ly, 0), (lx + leg, ly + leg, h - t), label, col)
    elif kind in ('sofa', 'chair'):
        seat = 0.45
        back = 0.2 if kind == 'sofa' else 0.06
        if kind == 'sofa':
            S.add_box((x0, y0, 0), (x1, y1, seat), label, col)
        else:
            leg = 0.04
            S.add_box((x0, y0, seat - 0.05), (x1, y1, seat), label, col,
                      bottom=True)
            for lx, ly in ((x0, y0), (x1 - leg, y0), (x0, y1 - leg),
                           (x1 - leg, y1 - leg)):
                S.add_box((lx, ly, 0), (lx + leg, ly + leg, seat - 0.05),
                          label, col)
        lo_hi = {0: ((x0, y0), (x1, y0 + back)),
                 1: ((x1 - back, y0), (x1, y1)),
                 2: ((x0, y1 - back), (x1, y1)),
                 3: ((x0, y0), (x0 + back, y1))}[facing]
        (bx0, by0), (bx1, by1) = lo_hi
        S.add_box((bx0, by0, seat), (bx1, by1, h), label, col)
    elif kind == 'bin':
        S.add_cylinder(x0 + w / 2, y0 + d / 2, 0, h, min(w, d) / 2, label,
                       col)
    elif kind == 'round_table':
        cx, cy, r = x0 + w / 2, y0 + d / 2, min(w, d) / 2
        S.add_cylinder(cx, cy, 0, h - 0.04, 0.05, label, col)
        S.add_cylinder(cx, cy, h - 0.04, 0.04, r, label, col)
    else:
        raise ValueError(f'unknown furniture kind {kind!r}')


def make_room(num_points=20000, seed=0, ceiling=0.6, noise=0.002,
              num_objects=(4, 9), origin=(0.0, 0.0, 0.0)):
    """One synthetic room.

    Args:
        num_points: exact number of points N.
        seed: int or tuple of ints; the room is a deterministic function of
            the arguments.
        ceiling: fraction of the room (along y) under a ceiling; 0 = open.
        noise: std (metres) of isotropic position noise.
        num_objects: (low, high) range of furniture pieces tried.
        origin (3,): offset added to every coordinate (far-from-origin tests).

    Returns:
        dict(coord (N, 3) float64, normal (N, 3) float32 unit, analytic,
        pointing into the room / out of objects; color (N, 3) uint8;
        segment (N,) int16 ScanNet-20 ids, -1 for the ceiling).
    """
    rng = np.random.default_rng(seed)
    W, D, H = rng.uniform(4, 7), rng.uniform(3.5, 6), rng.uniform(2.5, 3.0)
    S = _Surfaces(rng)
    S.add_rect((0, 0, 0), (W, 0, 0), (0, D, 0), (0, 0, 1), FLOOR)
    wall = S.colour(WALL)
    S.add_rect((0, 0, 0), (0, D, 0), (0, 0, H), (1, 0, 0), WALL, wall)
    S.add_rect((W, 0, 0), (0, D, 0), (0, 0, H), (-1, 0, 0), WALL, wall)
    S.add_rect((0, 0, 0), (W, 0, 0), (0, 0, H), (0, 1, 0), WALL, wall)
    S.add_rect((0, D, 0), (W, 0, 0), (0, 0, H), (0, -1, 0), WALL, wall)
    if ceiling > 0:
        S.add_rect((0, D * (1 - ceiling), H), (W, 0, 0), (0, D * ceiling, 0),
                   (0, 0, -1), CEILING)
    # wall fixtures sit 1 cm in front of their wall
    dx = rng.uniform(0.2, W - 1.2)
    S.add_rect((dx, 0.01, 0), (0.9, 0, 0), (0, 0, 2.0), (0, 1, 0), DOOR)
    wy = rng.uniform(0.3, D - 1.6)
    S.add_rect((W - 0.01, wy, 0.9), (0, 1.2, 0), (0, 0, 1.1), (-1, 0, 0),
               WINDOW)
    py = rng.uniform(0.3, D - 1.0)
    S.add_rect((0.01, py, 1.3), (0, 0.7, 0), (0, 0, 0.5), (1, 0, 0), PICTURE)

    placed = [(dx, 0, dx + 0.9, 1.0)]  # keep the door's swing free
    for _ in range(rng.integers(num_objects[0], num_objects[1] + 1)):
        label, w, d, h, at_wall, kind = _CATALOGUE[
            rng.integers(len(_CATALOGUE))]
        for _try in range(20):
            # facing = the side the back (of a sofa, a chair, or anything
            # against a wall) is on; odd facings turn the footprint by 90
            facing = int(rng.integers(4))
            ww, dd = (w, d) if facing % 2 == 0 else (d, w)
            if at_wall:
                if facing == 0:
                    x0, y0 = rng.uniform(0, W - ww), 0.0
                elif facing == 1:
                    x0, y0 = W - ww, rng.uniform(0, D - dd)
                elif facing == 2:
                    x0, y0 = rng.uniform(0, W - ww), D - dd
                else:
                    x0, y0 = 0.0, rng.uniform(0, D - dd)
            else:
                x0 = rng.uniform(0.3, W - ww - 0.3)
                y0 = rng.uniform(0.3, D - dd - 0.3)
            fp = (x0, y0, x0 + ww, y0 + dd)
            inside = x0 >= 0 and y0 >= 0 and fp[2] <= W and fp[3] <= D
            if inside and not _overlaps(fp, placed):
                placed.append(fp)
                _add_furniture(S, kind, label, x0, y0, ww, dd, h, facing)
                break

    coord, normal, segment, colour = S.sample(int(num_points))
    if noise:
        coord = coord + rng.normal(0, noise, coord.shape)
    colour = np.clip(colour + rng.normal(0, 6, colour.shape), 0, 255)
    coord = coord + np.asarray(origin, dtype=np.float64)
    return dict(coord=coord, normal=normal.astype(np.float32),
                color=np.rint(colour).astype(np.uint8), segment=segment)


def _to_nyu40(segment):
    ids = np.asarray((0,) + SCANNET20_NYU40_IDS, dtype=np.int64)
    return ids[segment.astype(np.int64) + 1]  # -1 -> 0 (unannotated)


def write_synthetic_dataset(root, num_train=4, num_val=2, num_points=20000,
                            seed=0, layout='pointcept'):
    """Write synthetic rooms in an input layout under ``root``.

    Args:
        layout: ``'pointcept'`` (``root/<split>/<scene>/coord.npy`` ...),
            ``'files'`` (``root/<split>/<scene>.npz``), ``'mmdet3d'``
            (``root/points``, ``root/semantic_mask`` with NYU40 ids,
            ``root/meta_data/scannetv2_*.txt``) or ``'scannet'``
            (``root/scans/<scene>/<scene>_vh_clean_2[.labels].ply``, split
            lists in ``root/splits``).

    Returns:
        dict(root, layout, splits={split: [scene ids]}, splits_dir or None).
    """
    root = os.fspath(root)
    names = {'train': [f'scene{i:04d}_00' for i in range(num_train)],
             'val': [f'scene{i:04d}_00' for i in range(num_train,
                                                       num_train + num_val)]}
    splits_dir = None
    for split, ids in names.items():
        for i, sid in enumerate(ids):
            idx = i if split == 'train' else num_train + i
            room = make_room(num_points, seed=(seed, idx))
            c, n = room['coord'], room['normal']
            rgb, seg = room['color'], room['segment']
            if layout == 'pointcept':
                d = os.path.join(root, split, sid)
                os.makedirs(d, exist_ok=True)
                np.save(os.path.join(d, 'coord.npy'), c.astype(np.float32))
                np.save(os.path.join(d, 'color.npy'), rgb)
                np.save(os.path.join(d, 'normal.npy'), n)
                np.save(os.path.join(d, 'segment20.npy'), seg)
            elif layout == 'files':
                os.makedirs(os.path.join(root, split), exist_ok=True)
                np.savez(os.path.join(root, split, f'{sid}.npz'),
                         coord=c.astype(np.float32), color=rgb, normal=n,
                         segment=seg)
            elif layout == 'mmdet3d':
                for sub in ('points', 'semantic_mask'):
                    os.makedirs(os.path.join(root, sub), exist_ok=True)
                np.concatenate([c, rgb], 1).astype('<f4').tofile(
                    os.path.join(root, 'points', f'{sid}.bin'))
                _to_nyu40(seg).astype('<i8').tofile(
                    os.path.join(root, 'semantic_mask', f'{sid}.bin'))
                splits_dir = os.path.join(root, 'meta_data')
            elif layout == 'scannet':
                d = os.path.join(root, 'scans', sid)
                os.makedirs(d, exist_ok=True)
                write_ply(os.path.join(d, f'{sid}_vh_clean_2.ply'), c,
                          color=rgb)
                write_ply(os.path.join(d, f'{sid}_vh_clean_2.labels.ply'), c,
                          label=_to_nyu40(seg), label_dtype='u2')
                splits_dir = os.path.join(root, 'splits')
            else:
                raise ValueError(f'unknown layout {layout!r}; use pointcept, '
                                 'files, mmdet3d or scannet')
    if splits_dir is not None:
        os.makedirs(splits_dir, exist_ok=True)
        for split, ids in names.items():
            with open(os.path.join(splits_dir, SPLIT_FILES[split]), 'w') as f:
                f.write(''.join(s + '\n' for s in ids))
    return dict(root=root, layout=layout, splits=names,
                splits_dir=splits_dir)
