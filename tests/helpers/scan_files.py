"""Small PLY files with the field layouts of real labelled scans.

``tests/conftest.py`` puts this folder on ``sys.path``: ``import
scan_files``. Two layouts, written property by property in the order real
collections use (``write_ply`` would put the label before extra fields):

``rgbi``   ``x y z red green blue scalar_intensity label``
           (float, uchar, float, double): intensity 0..1.
``normal`` ``x y z nx ny nz red green blue curvature label alpha intensity``
           (float x6, uchar x3, float, int, uchar, float): intensity
           0..65535 here, so the two layouts differ in scale.
"""
import numpy as np

LAYOUTS = {
    'rgbi': [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'),
             ('green', 'u1'), ('blue', 'u1'), ('scalar_intensity', '<f4'),
             ('label', '<f8')],
    'normal': [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('nx', '<f4'),
               ('ny', '<f4'), ('nz', '<f4'), ('red', 'u1'), ('green', 'u1'),
               ('blue', 'u1'), ('curvature', '<f4'), ('label', '<i4'),
               ('alpha', 'u1'), ('intensity', '<f4')],
}
_PLY_NAME = {'<f4': 'float', '<f8': 'double', 'u1': 'uchar', '<i4': 'int'}


def scan_arrays(n=400, seed=0, layout='rgbi'):
    """The per-point arrays of one scan: ``coord (n, 3)`` float32 in a
    12 x 8 x 3 m box, ``color (n, 3)`` uint8, ``normal (n, 3)`` unit
    float32, ``intensity (n,)`` float32 (0..1 for ``rgbi``, integers
    0..65535 for ``normal``), ``label (n,)`` ints 0..14."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    intensity = (rng.random(n).astype(np.float32) if layout == 'rgbi' else
                 rng.integers(0, 65536, n).astype(np.float32))
    return dict(
        coord=(rng.random((n, 3)) * [12, 8, 3]).astype(np.float32),
        color=rng.integers(0, 256, (n, 3)).astype(np.uint8),
        normal=normal, intensity=intensity,
        label=rng.integers(0, 15, n))


def write_scan_ply(path, layout='rgbi', n=400, seed=0, names=None):
    """Write one binary little-endian PLY of ``layout``; ``names`` renames
    properties (e.g. ``{'scalar_intensity': 'scalar_Intensity'}``).

    Returns:
        the arrays written (:func:`scan_arrays`).
    """
    a = scan_arrays(n, seed, layout)
    props = LAYOUTS[layout]
    rec = np.zeros(n, np.dtype(props))
    for i, c in enumerate('xyz'):
        rec[c] = a['coord'][:, i]
    for i, c in enumerate(('red', 'green', 'blue')):
        rec[c] = a['color'][:, i]
    rec['label'] = a['label']
    if layout == 'rgbi':
        rec['scalar_intensity'] = a['intensity']
    else:
        for i, c in enumerate(('nx', 'ny', 'nz')):
            rec[c] = a['normal'][:, i]
        rec['curvature'] = 0.01
        rec['alpha'] = 255
        rec['intensity'] = a['intensity']
    names = names or {}
    head = ['ply', 'format binary_little_endian 1.0',
            'comment Created by a scanner', f'element vertex {n}']
    head += [f'property {_PLY_NAME[t]} {names.get(p, p)}' for p, t in props]
    head.append('end_header')
    with open(path, 'wb') as f:
        f.write(('\n'.join(head) + '\n').encode('ascii'))
        f.write(rec.tobytes())
    return a
