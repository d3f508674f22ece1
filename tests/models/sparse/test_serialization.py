"""Serialization codes (PTv3's space-filling curves) against references
written here: bit interleaving one bit at a time, and the Hilbert curve's
defining properties on small grids."""
import itertools

import pytest
import torch

from dbbd.models.sparse.serialization import (encode, hilbert_encode,
                                              z_order_encode)


def _interleave_bit_by_bit(x, y, z, depth):
    code = 0
    for i in range(depth):
        code |= ((x >> i) & 1) << (3 * i + 2)
        code |= ((y >> i) & 1) << (3 * i + 1)
        code |= ((z >> i) & 1) << (3 * i)
    return code


def _full_grid(depth):
    return torch.tensor(list(itertools.product(range(2 ** depth), repeat=3)))


@pytest.mark.parametrize('depth', [1, 5, 16])
def test_z_order_is_bit_interleaving(depth):
    gen = torch.Generator().manual_seed(depth)
    grid = torch.randint(0, 2 ** depth, (200, 3), generator=gen)
    want = torch.tensor([_interleave_bit_by_bit(*g, depth)
                         for g in grid.tolist()])
    assert torch.equal(z_order_encode(grid, depth), want)
    assert torch.equal(encode(grid, depth=depth, order='z'), want)
    swapped = torch.tensor([_interleave_bit_by_bit(y, x, z, depth)
                            for x, y, z in grid.tolist()])
    assert torch.equal(encode(grid, depth=depth, order='z-trans'), swapped)


@pytest.mark.parametrize('depth', [1, 2, 3])
@pytest.mark.parametrize('order', ['hilbert', 'hilbert-trans'])
def test_hilbert_visits_every_cell_once_through_face_neighbours(depth,
                                                                order):
    grid = _full_grid(depth)
    code = encode(grid, depth=depth, order=order)
    # a bijection onto [0, 8^depth)
    assert torch.equal(torch.sort(code).values, torch.arange(8 ** depth))
    path = grid[torch.argsort(code)]
    steps = (path[1:] - path[:-1]).abs().sum(1)
    assert torch.equal(steps, torch.ones_like(steps))   # adjacency
    assert path[0].tolist() == [0, 0, 0]


def test_hilbert_trans_is_hilbert_of_swapped_axes_and_differs_from_z():
    grid = _full_grid(3)
    assert torch.equal(encode(grid, depth=3, order='hilbert-trans'),
                       hilbert_encode(grid[:, [1, 0, 2]], 3))
    z = encode(grid, depth=3, order='z')
    path = grid[torch.argsort(z)]
    # z-order jumps (which is why the Hilbert test above can fail)
    assert (path[1:] - path[:-1]).abs().sum(1).max() > 1


@pytest.mark.parametrize('order', ['z', 'z-trans', 'hilbert',
                                   'hilbert-trans'])
def test_children_of_a_parent_cell_share_code_above_three_bits(order):
    """Serialized pooling finds parents as code >> 3."""
    grid = _full_grid(3)
    parent_code = encode(grid, depth=3, order=order) >> 3
    parent_cell = (grid >> 1) @ torch.tensor([16, 4, 1])
    pairs = torch.unique(torch.stack([parent_cell, parent_code], 1), dim=0)
    # one code per parent cell and one parent cell per code
    assert len(pairs) == len(torch.unique(parent_cell)) == \
        len(torch.unique(parent_code)) == 64


def test_batch_index_above_the_code_sorts_scenes_apart():
    grid = torch.tensor([[3, 3, 3], [0, 0, 0], [1, 0, 0]])
    batch = torch.tensor([0, 1, 1])
    code = encode(grid, batch, depth=2, order='hilbert')
    assert torch.argsort(code).tolist() == [0, 1, 2]
    assert (code[1:] >> 6).tolist() == [1, 1]


def test_bad_order_and_depth_one_line_errors():
    grid = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="order must be one of .*'peano'"):
        encode(grid, order='peano')
    with pytest.raises(ValueError, match='depth must be in'):
        encode(grid, depth=17)
