"""Point-cloud transforms: dict in, dict out, registered in ``TRANSFORMS``.

Each view of a scene goes through the configured ``pipeline``. Keys a
transform may read or write: ``coord (N, 3) float32``, ``normal (N, 3)``,
``color (N, 3)`` (0..255 until :class:`NormalizeColor`, then -1..1),
``intensity (N,)`` or None (the sensor's scale until
:class:`NormalizeIntensity`, then -1..1).

Randomness comes only from ``results['rng']``, a ``numpy.random.Generator``
the dataset derives from ``(seed, epoch, sample index, view)``. That makes
the augmentation of a sample a pure function of those numbers, whatever the
number of loader workers and across ``--resume``. A transform called
without ``rng`` (e.g. interactively) draws from a fresh generator.

Transforms never drop or reorder points: the region tree is a set of point
indices shared by both views. Two exceptions, both for backbones that do
not read the tree: :class:`GridSample`, which works on the whole scene
before :class:`MultiView`, drops the tree and records how to carry
predictions back to every point (see
:mod:`dbbd.models.segmentors.point_segmentor`); and
:class:`RandomPointCrop`, a per-view crop that keeps a subset of the
points, in order, and records each kept point's row of the scene
(``index``), so points of two views are matched through the scene.
"""
import numpy as np

from dbbd.registry import TRANSFORMS

__all__ = [
    'CenterShift', 'RandomRotateZ', 'ViewRotateZ', 'RandomScale',
    'RandomFlip', 'RandomJitter', 'RandomTranslate', 'ColorJitter',
    'ChromaticAutoContrast', 'RandomColorDrop', 'NormalizeColor',
    'NormalizeIntensity', 'intensity_full_scale', 'GridSample',
    'RandomPatchMask', 'RandomViewCrop', 'RandomPointCrop', 'POINT_KEYS',
    'VIEW_POINT_KEYS'
]


def _rng(results):
    rng = results.get('rng')
    return rng if rng is not None else np.random.default_rng()


class _RandomTransform:
    """Base: apply with probability ``p``."""

    def __init__(self, p=1.0):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f'{type(self).__name__}: p must be in [0, 1], '
                             f'got {p}')
        self.p = p

    def __call__(self, results):
        rng = _rng(results)
        # Draw the coin even when p == 1 so that the random stream of later
        # transforms does not depend on this transform's p.
        if rng.random() < self.p:
            results = self.apply(results, rng)
        return results

    def apply(self, results, rng):
        raise NotImplementedError

    def __repr__(self):
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'{type(self).__name__}({args})'


@TRANSFORMS.register_module()
class CenterShift:
    """Move the scene to the origin: x, y centred, z from 0 (``apply_z``)."""

    def __init__(self, apply_z=True):
        self.apply_z = apply_z

    def __call__(self, results):
        coord = results['coord']
        lo, hi = coord.min(0), coord.max(0)
        shift = (lo + hi) / 2
        shift[2] = lo[2] if self.apply_z else 0.0
        results['coord'] = (coord - shift).astype(np.float32)
        return results

    def __repr__(self):
        return f'CenterShift(apply_z={self.apply_z})'


@TRANSFORMS.register_module()
class RandomRotateZ(_RandomTransform):
    """Rotate coordinates and normals about the z axis.

    Args:
        angle: ``(low, high)`` in radians, uniform.
    """

    def __init__(self, angle=(-np.pi, np.pi), p=1.0):
        super().__init__(p)
        self.angle = tuple(angle)

    def apply(self, results, rng):
        return _rotate_z(results, rng.uniform(*self.angle))


def _rotate_z(results, angle):
    """Rotate ``coord`` and ``normal`` by ``angle`` radians about z."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32)
    results['coord'] = results['coord'] @ rot.T
    if results.get('normal') is not None:
        results['normal'] = results['normal'] @ rot.T
    return results


@TRANSFORMS.register_module()
class ViewRotateZ:
    """Rotate view ``v`` of :class:`MultiView` by ``angles[v]`` degrees
    about z (coordinates and normals), no randomness.

    Test-time augmentation: ``MultiView(num_views=4, transforms=[...,
    dict(type='ViewRotateZ', angles=(0, 90, 180, 270))])`` makes four views
    of the scene rotated by 0, 90, 180 and 270 degrees, and the segmentor
    averages their logits (``tta_pipeline`` of
    ``configs/_base_/datasets/scannet_seg.py``, ``tools/test.py --tta``).
    """

    def __init__(self, angles=(0, 90, 180, 270)):
        self.angles = tuple(float(a) for a in angles)
        if not self.angles:
            raise ValueError('ViewRotateZ: angles is empty')

    def __call__(self, results):
        v = int(results.get('view_index', 0))
        if v >= len(self.angles):
            raise ValueError(
                f'ViewRotateZ: view {v + 1} has no angle; angles '
                f'{self.angles} cover {len(self.angles)} views (set '
                'MultiView.num_views to the number of angles)')
        return _rotate_z(results, np.deg2rad(self.angles[v]))

    def __repr__(self):
        return f'ViewRotateZ(angles={self.angles!r})'


@TRANSFORMS.register_module()
class RandomScale(_RandomTransform):
    """Scale coordinates by a factor in ``scale`` (per axis if anisotropic).

    Normals of an anisotropic scale are transformed by the inverse scale
    and renormalised, so they stay perpendicular to the surfaces.
    """

    def __init__(self, scale=(0.9, 1.1), anisotropic=False, p=1.0):
        super().__init__(p)
        self.scale = tuple(scale)
        self.anisotropic = anisotropic

    def apply(self, results, rng):
        f = rng.uniform(*self.scale, size=3 if self.anisotropic else 1)
        f = np.broadcast_to(f, (3,)).astype(np.float32)
        results['coord'] = results['coord'] * f
        if self.anisotropic and results.get('normal') is not None:
            n = results['normal'] / f
            results['normal'] = n / np.maximum(
                np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return results


@TRANSFORMS.register_module()
class RandomFlip(_RandomTransform):
    """Mirror x and/or y, each with probability ``p`` (normals follow)."""

    def __init__(self, p=0.5):
        super().__init__(p)

    def __call__(self, results):
        rng = _rng(results)
        flips = rng.random(2) < self.p
        sign = np.array([-1 if flips[0] else 1, -1 if flips[1] else 1, 1],
                        dtype=np.float32)
        results['coord'] = results['coord'] * sign
        if results.get('normal') is not None:
            results['normal'] = results['normal'] * sign
        return results


@TRANSFORMS.register_module()
class RandomJitter(_RandomTransform):
    """Add clipped Gaussian noise (metres) to every coordinate."""

    def __init__(self, sigma=0.005, clip=0.02, p=1.0):
        super().__init__(p)
        if sigma < 0 or clip <= 0:
            raise ValueError('RandomJitter: sigma must be >= 0 and clip > 0, '
                             f'got sigma={sigma}, clip={clip}')
        self.sigma, self.clip = sigma, clip

    def apply(self, results, rng):
        noise = np.clip(
            rng.normal(0.0, self.sigma, size=results['coord'].shape),
            -self.clip, self.clip)
        results['coord'] = results['coord'] + noise.astype(np.float32)
        return results


@TRANSFORMS.register_module()
class RandomTranslate(_RandomTransform):
    """Shift the scene by a uniform offset in ``[-shift, shift]`` per axis."""

    def __init__(self, shift=(0.2, 0.2, 0.0), p=1.0):
        super().__init__(p)
        self.shift = tuple(shift)

    def apply(self, results, rng):
        s = np.asarray(self.shift, dtype=np.float64)
        off = rng.uniform(-s, s).astype(np.float32)
        results['coord'] = results['coord'] + off
        return results


@TRANSFORMS.register_module()
class ColorJitter(_RandomTransform):
    """Add Gaussian noise of ``std`` (fraction of 255) to colours."""

    def __init__(self, std=0.05, p=0.95):
        super().__init__(p)
        self.std = std

    def apply(self, results, rng):
        if results.get('color') is None:
            return results
        noise = rng.normal(0.0, self.std * 255, size=results['color'].shape)
        results['color'] = np.clip(results['color'] + noise, 0,
                                   255).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class ChromaticAutoContrast(_RandomTransform):
    """Stretch colours to the full 0..255 range, blended by a random factor.
    """

    def __init__(self, p=0.2, blend_factor=None):
        super().__init__(p)
        self.blend_factor = blend_factor

    def apply(self, results, rng):
        color = results.get('color')
        if color is None:
            return results
        lo = color.min(0, keepdims=True)
        hi = color.max(0, keepdims=True)
        scale = 255.0 / np.maximum(hi - lo, 1e-6)
        contrast = (color - lo) * scale
        b = rng.random() if self.blend_factor is None else self.blend_factor
        results['color'] = ((1 - b) * color + b * contrast).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class RandomColorDrop(_RandomTransform):
    """With probability ``p``, replace every point's colour by ``value``
    (0..255; the default 127.5 is 0 after :class:`NormalizeColor`): the
    view shows geometry, normals and intensity only. In a pre-training
    view, the other view's colour must then be matched from geometry
    (Pointcept's ``RandomColorDrop``). Put it before
    :class:`NormalizeColor`."""

    def __init__(self, p=0.2, value=127.5):
        super().__init__(p)
        if not 0.0 <= float(value) <= 255.0:
            raise ValueError(f'RandomColorDrop: value must be a colour in '
                             f'0..255, got {value}')
        self.value = float(value)

    def apply(self, results, rng):
        color = results.get('color')
        if color is None:
            return results
        results['color'] = np.full_like(color, self.value, dtype=np.float32)
        return results


@TRANSFORMS.register_module()
class NormalizeColor:
    """Map colours from 0..255 to -1..1 (put it after colour augmentations).
    """

    def __call__(self, results):
        if results.get('color') is not None:
            results['color'] = (results['color'] / 127.5 - 1.0).astype(
                np.float32)
        return results

    def __repr__(self):
        return 'NormalizeColor()'


#: The full scales of common intensity encodings: floats in 0..1, 8-bit
#: and 16-bit integers.
INTENSITY_SCALES = (1.0, 255.0, 65535.0)


def intensity_full_scale(intensity):
    """The full scale of a scene's intensity (N,): the smallest of
    :data:`INTENSITY_SCALES` (1, 255, 65535) that is at least its largest
    value; above 65535 (an encoding the rule does not know) the scene's
    99th percentile. Returns a float > 0."""
    a = np.asarray(intensity, dtype=np.float64)
    top = float(a.max()) if a.size else 0.0
    for scale in INTENSITY_SCALES:
        if top <= scale:
            return scale
    return max(float(np.percentile(a, 99)), 1e-12)


@TRANSFORMS.register_module()
class NormalizeIntensity:
    """Map intensity from the sensor's scale to -1..1, like
    :class:`NormalizeColor` does colours.

    Sensors write intensity on different scales (0..1 floats, 0..255,
    0..65535), and ``intensity.npy`` keeps the source's. The rule: divide
    by the scene's *full scale*, the smallest of 1, 255 and 65535 that is
    at least the scene's largest value (:func:`intensity_full_scale`; the
    99th percentile above 65535), then ``2 * x - 1``, clipped to -1..1.
    A fixed rule rather than a per-scene statistic: scenes of one sensor
    keep comparable values (a dark scene stays dark), and a scene whose
    intensity is all zero or nearly so (fields written but never
    measured) stays constant instead of having its few values stretched to
    full scale. Negative values clip to -1.

    Args:
        scale: a fixed full scale for every scene (e.g. 4095 for 12-bit
            intensity) instead of the rule; None: the rule.

    ``results['intensity']`` (N,) becomes float32 in -1..1; None stays None.
    """

    def __init__(self, scale=None):
        if scale is not None and not (
                isinstance(scale, (int, float)) and not isinstance(
                    scale, bool) and np.isfinite(scale) and scale > 0):
            raise ValueError(f'NormalizeIntensity: scale must be a number > '
                             f'0 or None, got {scale!r}')
        self.scale = None if scale is None else float(scale)

    def __call__(self, results):
        inten = results.get('intensity')
        if inten is not None:
            inten = np.asarray(inten, dtype=np.float32)
            scale = self.scale or intensity_full_scale(inten)
            results['intensity'] = np.clip(
                inten * np.float32(2.0 / scale) - np.float32(1.0), -1.0,
                1.0).astype(np.float32)
        return results

    def __repr__(self):
        return f'NormalizeIntensity(scale={self.scale!r})'


def _add_mask(results, hidden):
    mask = results.get('mask')
    results['mask'] = hidden if mask is None else (mask | hidden)
    return results


@TRANSFORMS.register_module()
class RandomPatchMask:
    """Hide the features of a random fraction of voxel-sized patches.

    The points of a view are grouped into cubic patches of ``patch_size``
    metres (on the view's own, augmented coordinates); ``ratio`` of the
    occupied patches are drawn and their points marked in
    ``results['mask']`` (N,) bool. Nothing is dropped: the points, their
    coordinates and the region tree stay, so both views keep the same
    regions; the model replaces the marked points' input features with a
    learned mask token (``mask_token=True`` on the backbone or
    ``SceneContrast``). Matching the two views can then no longer be solved
    from each point's own features: the network has to infer them from
    the context (MSC's masked scene contrast).

    Args:
        ratio: fraction of the occupied patches hidden (MSC: 0.4).
        patch_size: patch edge in metres (MSC: 0.1).
    """

    def __init__(self, ratio=0.4, patch_size=0.1):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f'RandomPatchMask: ratio must be in [0, 1], '
                             f'got {ratio}')
        if not patch_size > 0:
            raise ValueError(f'RandomPatchMask: patch_size must be > 0, '
                             f'got {patch_size}')
        self.ratio, self.patch_size = ratio, patch_size

    def __call__(self, results):
        rng = _rng(results)
        cell = np.floor(results['coord'] / self.patch_size).astype(np.int64)
        _, patch = np.unique(cell, axis=0, return_inverse=True)
        patch = patch.reshape(-1)
        num = int(patch.max()) + 1 if patch.size else 0
        chosen = np.zeros(num, dtype=bool)
        chosen[rng.permutation(num)[:int(round(self.ratio * num))]] = True
        return _add_mask(results, chosen[patch])

    def __repr__(self):
        return (f'RandomPatchMask(ratio={self.ratio}, '
                f'patch_size={self.patch_size})')


@TRANSFORMS.register_module()
class RandomViewCrop:
    """A random crop of the view that keeps every point: the points outside
    a random box are hidden like masked patches (``results['mask']``).

    The box spans ``ratio`` of the view's extent along x and along y (all
    of z), at a uniform random position; points, coordinates and the tree
    stay, so the two views still share every point (and region).

    Args:
        ratio: fraction of the x and y extent the box covers.
    """

    def __init__(self, ratio=0.8):
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f'RandomViewCrop: ratio must be in (0, 1], '
                             f'got {ratio}')
        self.ratio = ratio

    def __call__(self, results):
        rng = _rng(results)
        coord = results['coord']
        lo, hi = coord.min(0), coord.max(0)
        size = (hi - lo) * self.ratio
        start = lo + rng.random(3) * (hi - lo - size)
        inside = np.all((coord[:, :2] >= start[:2]) &
                        (coord[:, :2] <= start[:2] + size[:2]), axis=1)
        return _add_mask(results, ~inside)

    def __repr__(self):
        return f'RandomViewCrop(ratio={self.ratio})'


#: Per-point arrays of a view dict (first axis N): what
#: :class:`RandomPointCrop` subsets.
VIEW_POINT_KEYS = ('coord', 'normal', 'color', 'intensity', 'mask')


def _ratio_range(owner, ratio):
    """``ratio`` as ``(low, high)`` with ``0 < low <= high <= 1``."""
    pair = (ratio, ratio) if isinstance(ratio, (int, float)) and not \
        isinstance(ratio, bool) else tuple(ratio) if isinstance(
            ratio, (list, tuple)) else ()
    if len(pair) != 2 or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool)
            for r in pair) or not 0 < pair[0] <= pair[1] <= 1:
        raise ValueError(f'{owner}: ratio must be a number or (low, high) '
                         f'with 0 < low <= high <= 1, got {ratio!r}')
    return float(pair[0]), float(pair[1])


@TRANSFORMS.register_module()
class RandomPointCrop:
    """Crop a view to the points nearest a random one of its points: a
    global or local view of self-distillation (Sonata, DINO's multi-crop).

    A fraction ``f`` of the view's N points is drawn uniformly in
    ``ratio``; the ``K = max(min_points, round(f * N))`` points (at most N)
    closest to a uniformly drawn centre point (Euclidean, 3D) are kept, in
    their order. Every per-point array of the view
    (:data:`VIEW_POINT_KEYS`: ``coord``, ``normal``, ``color``,
    ``intensity``, ``mask``) is subset, and ``results['index'] (K,)``
    int64 records, for each kept point, its row of the scene the view was
    made from (composed with an earlier crop's ``index``): two views'
    points are the same scene point exactly when their ``index`` entries
    are equal. Put it first in a view's transforms (``MultiView`` /
    ``MultiCrop``); the transforms after it see the crop only, and masks
    drawn after it are drawn on the crop.

    Args:
        ratio: ``(low, high)`` fraction of the points kept (Sonata-like
            global views ``(0.4, 1.0)``, local ``(0.05, 0.4)``), or one
            number.
        min_points: keep at least this many points (all when the view has
            fewer).
    """

    def __init__(self, ratio=(0.4, 1.0), min_points=1):
        self.ratio = _ratio_range('RandomPointCrop', ratio)
        if isinstance(min_points, bool) or not isinstance(
                min_points, int) or min_points < 1:
            raise ValueError(f'RandomPointCrop: min_points must be an int '
                             f'>= 1, got {min_points!r}')
        self.min_points = min_points

    def __call__(self, results):
        rng = _rng(results)
        coord = np.asarray(results['coord'])
        n = coord.shape[0]
        frac = rng.uniform(*self.ratio)
        k = min(n, max(self.min_points, int(round(frac * n))))
        centre = coord[rng.integers(n)] if n else np.zeros(3, np.float32)
        if k < n:
            dist = np.square(coord - centre).sum(1)
            keep = np.sort(np.argpartition(dist, k - 1)[:k])
        else:
            keep = np.arange(n)
        for key in VIEW_POINT_KEYS:
            if results.get(key) is not None:
                results[key] = np.asarray(results[key])[keep]
        index = results.get('index')
        results['index'] = keep.astype(np.int64) if index is None else \
            np.asarray(index, np.int64)[keep]
        return results

    def __repr__(self):
        return (f'RandomPointCrop(ratio={self.ratio}, '
                f'min_points={self.min_points})')


#: Tree arrays of a scene dict; :class:`GridSample` drops them.
TREE_KEYS = ('point_region', 'region_parent', 'region_center',
             'level_offset')
#: Per-point arrays of a scene dict (first axis N): a transform that keeps
#: a subset of the points indexes every one of them.
POINT_KEYS = ('coord', 'normal', 'color', 'intensity', 'segment')


@TRANSFORMS.register_module()
class GridSample:
    """Keep one point per ``grid_size`` voxel of the whole scene, and record
    how to carry predictions back to every point.

    Put it first in the pipeline, before :class:`MultiView`: it subsamples
    the per-point arrays of the scene dict (:data:`POINT_KEYS`: ``coord``,
    ``normal``, ``color``, ``intensity``, ``segment``) and
    adds ``inverse (N,)`` (for each of the scene's N points, its kept
    point) and ``origin_segment (N,)`` (the full-resolution labels, or
    None), which the segmentor and :class:`~dbbd.evaluation.SegMetric` use
    to score every point at full resolution. The region tree is point
    indices of the full scene, so it is dropped: only for backbones that do
    not read the tree (a scene backbone called as ``backbone(coord, feat,
    offset)``); the tree backbone refuses a batch without one.

    Args:
        grid_size: voxel edge in metres (Pointcept's ScanNet: 0.02).
        mode: ``'train'``: a random point of each voxel (drawn from the
            sample's ``seed_key``, so reproducible); ``'test'``: the point
            nearest the voxel centre (deterministic).
    """

    def __init__(self, grid_size=0.02, mode='train'):
        if not isinstance(grid_size, (int, float)) or grid_size <= 0:
            raise ValueError(f'GridSample: grid_size must be a number > 0 '
                             f'(metres), got {grid_size!r}')
        if mode not in ('train', 'test'):
            raise ValueError(f"GridSample: mode must be 'train' or 'test', "
                             f'got {mode!r}')
        self.grid_size, self.mode = float(grid_size), mode

    def __call__(self, results):
        from .voxel import voxel_grid
        rng = None
        if self.mode == 'train':
            # a stream of its own: MultiView's views use (seed_key, view)
            rng = np.random.default_rng(
                list(results.get('seed_key', (0, 0, 0))) + [1000])
        keep, inverse = voxel_grid(results['coord'], self.grid_size, rng)
        segment = results.get('segment')
        results['origin_segment'] = None if segment is None else np.asarray(
            segment, dtype=np.int64)
        results['inverse'] = inverse
        for key in POINT_KEYS:
            if results.get(key) is not None:
                results[key] = np.asarray(results[key])[keep]
        for key in TREE_KEYS:
            results[key] = None
        return results

    def __repr__(self):
        return f'GridSample(grid_size={self.grid_size}, mode={self.mode!r})'
