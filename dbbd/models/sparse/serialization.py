"""Space-filling-curve codes of grid coordinates (Point Transformer V3's
serialization), with tensor bit operations.

A *code* orders the voxels of a batch along a curve: sorting by it puts the
voxels of each scene in one run (the batch index is in the top bits) and
neighbours on the curve are neighbours in space. Four orders, as in the
PTv3 paper (Wu et al., CVPR 2024, section 3.1):

- ``'z'``: Morton (z-order) code, the bits of x, y and z interleaved, x the
  most significant of each triple;
- ``'hilbert'``: the Hilbert curve of Skilling ("Programming the Hilbert
  curve", 2004): the coordinates are turned into the Hilbert index's
  "transpose" in place, then interleaved like the z-order code;
- ``'z-trans'``, ``'hilbert-trans'``: the same curves with x and y
  exchanged.

Both curves are hierarchical: the 8 cells of a parent cell (coordinates
``>> 1``) hold 8 consecutive codes, so ``code >> 3`` is the same for all
children of a parent and differs between parents. Serialized pooling
(:mod:`dbbd.models.backbones.ptv3`) finds the parents from the code that
way. The bit conventions (x most significant, Skilling's transform) are
those of Pointcept's serialization, so checkpoints trained there see the
same orders here.
"""
import torch

__all__ = ['ORDERS', 'MAX_DEPTH', 'z_order_encode', 'hilbert_encode',
           'encode']

#: The serialization orders, by name.
ORDERS = ('z', 'z-trans', 'hilbert', 'hilbert-trans')
#: Most bits per coordinate a code holds (3 * 16 = 48 bits, the batch index
#: above them).
MAX_DEPTH = 16


def _spread_bits(v):
    """``v (N,)`` int64 with values below ``2 ** 21`` -> its bits moved to
    every third position (bit ``i`` to bit ``3 i``)."""
    v = v & 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def _interleave(x, y, z):
    return (_spread_bits(x) << 2) | (_spread_bits(y) << 1) | _spread_bits(z)


def _check(grid, depth):
    if grid.dim() != 2 or grid.shape[1] != 3:
        raise ValueError(f'grid must be (N, 3) integer coordinates, got '
                         f'shape {tuple(grid.shape)}')
    if not 0 <= depth <= MAX_DEPTH:
        raise ValueError(f'depth must be in [0, {MAX_DEPTH}], got {depth}')


def z_order_encode(grid, depth=MAX_DEPTH):
    """Morton codes of ``grid (N, 3)`` (non-negative integers below
    ``2 ** depth``): bit ``i`` of x, y, z goes to bit ``3 i + 2``,
    ``3 i + 1``, ``3 i``. Returns ``(N,)`` int64."""
    _check(grid, depth)
    g = grid.long() & ((1 << depth) - 1)
    return _interleave(g[:, 0], g[:, 1], g[:, 2])


def hilbert_encode(grid, depth=MAX_DEPTH):
    """Hilbert indices of ``grid (N, 3)`` (non-negative integers below
    ``2 ** depth``) on the ``2 ** depth`` cube: consecutive indices are
    face-adjacent cells, and index 0 is the origin. Returns ``(N,)`` int64.

    Skilling's ``AxesToTranspose``, every point at once: from the top bit
    ``Q`` down, each axis ``i`` either inverts the lower bits of axis 0
    (bit ``Q`` of axis ``i`` set) or exchanges its lower bits with axis 0's;
    then a Gray decode across axes and levels. The loops are over the
    ``depth`` bits and 3 axes, never over points.
    """
    _check(grid, depth)
    if depth == 0:
        return grid.new_zeros(grid.shape[0], dtype=torch.long)
    g = grid.long() & ((1 << depth) - 1)
    x = [g[:, 0], g[:, 1], g[:, 2]]
    q = 1 << (depth - 1)
    while q > 1:
        low = q - 1
        for i in range(3):
            on = (x[i] & q) != 0
            if i == 0:
                x[0] = torch.where(on, x[0] ^ low, x[0])
                continue
            swap = torch.where(on, 0, (x[0] ^ x[i]) & low)
            x[0] = torch.where(on, x[0] ^ low, x[0] ^ swap)
            x[i] = x[i] ^ swap
        q >>= 1
    # Gray decode: across the axes of one level, then the levels above
    x[1] = x[1] ^ x[0]
    x[2] = x[2] ^ x[1]
    t = torch.zeros_like(x[2])
    q = 1 << (depth - 1)
    while q > 1:
        t = t ^ torch.where((x[2] & q) != 0, q - 1, 0)
        q >>= 1
    return _interleave(x[0] ^ t, x[1] ^ t, x[2] ^ t)


def encode(grid, batch=None, depth=MAX_DEPTH, order='z'):
    """The code of ``order`` for ``grid (N, 3)``, the batch index above its
    ``3 * depth`` bits.

    Args:
        grid (N, 3): non-negative integer grid coordinates below
            ``2 ** depth``.
        batch (N,): optional scene index of each row (< ``2 ** 15``).
        depth: bits per coordinate (at most :data:`MAX_DEPTH`).
        order: one of :data:`ORDERS`.

    Returns:
        (N,) int64: sorting it orders the rows by scene, then along the
        curve.
    """
    if order not in ORDERS:
        raise ValueError(f'order must be one of {ORDERS}, got {order!r}')
    if order.endswith('-trans'):
        grid = grid[:, [1, 0, 2]]
    fn = z_order_encode if order.startswith('z') else hilbert_encode
    code = fn(grid, depth)
    if batch is not None:
        code = (batch.long() << (3 * depth)) | code
    return code
