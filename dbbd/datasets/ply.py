"""PLY point clouds and meshes, read and written with numpy only.

Supports ``ascii``, ``binary_little_endian`` and ``binary_big_endian``;
scalar properties of any PLY type; list properties whose rows all have the
same length (triangles, or uniform polygons that are fan-triangulated), which
covers ScanNet's ``*_vh_clean_2.ply`` meshes. Whole elements are parsed with
one ``np.frombuffer`` (binary) or one token split (ascii): no per-vertex
Python loop, so a 150k-vertex mesh reads in milliseconds.

Every problem raises a one-line ``ValueError`` that names the file (and,
in an ascii body, the line: each non-blank line must hold exactly one row).
"""
import os

import numpy as np

__all__ = ['read_ply', 'read_ply_points', 'write_ply', 'color_to_uint8',
           'find_intensity', 'INTENSITY_NAMES', 'PLY_TYPES']

# PLY type name -> numpy type code (both the classic and the sized names).
PLY_TYPES = {
    'char': 'i1', 'int8': 'i1', 'uchar': 'u1', 'uint8': 'u1',
    'short': 'i2', 'int16': 'i2', 'ushort': 'u2', 'uint16': 'u2',
    'int': 'i4', 'int32': 'i4', 'uint': 'u4', 'uint32': 'u4',
    'float': 'f4', 'float32': 'f4', 'double': 'f8', 'float64': 'f8',
}
_NP_TO_PLY = {'i1': 'char', 'u1': 'uchar', 'i2': 'short', 'u2': 'ushort',
              'i4': 'int', 'u4': 'uint', 'f4': 'float', 'f8': 'double'}
_FORMATS = {'ascii': None, 'binary_little_endian': '<',
            'binary_big_endian': '>'}
_MAX_HEADER = 1 << 20  # a header longer than 1 MiB is not a PLY header


def _err(path, msg):
    return ValueError(f'{path}: {msg}')


def _parse_header(path, raw):
    """Return ``(fmt, elements, data_start)``.

    ``elements`` is a list of ``(name, count, props)`` where ``props`` is a
    list of ``(name, type_code)`` for scalars or ``(name, (count_code,
    item_code))`` for lists.
    """
    if not raw.startswith(b'ply'):
        raise _err(path, 'not a PLY file (does not start with "ply")')
    end = raw.find(b'end_header', 0, _MAX_HEADER)
    if end < 0:
        raise _err(path, 'PLY header has no "end_header" line (file '
                   'truncated or not a PLY file)')
    nl = raw.find(b'\n', end)
    if nl < 0:
        raise _err(path, 'PLY file ends right after "end_header" (no data)')
    header = raw[:end].decode('ascii', errors='replace').splitlines()
    fmt, elements = None, []
    for lineno, line in enumerate(header[1:], start=2):
        tok = line.split()
        if not tok or tok[0] in ('comment', 'obj_info'):
            continue
        if tok[0] == 'format':
            if len(tok) < 2 or tok[1] not in _FORMATS:
                raise _err(path, f'header line {lineno}: unknown format '
                           f'{line.strip()!r} (expected ascii, '
                           'binary_little_endian or binary_big_endian)')
            fmt = tok[1]
        elif tok[0] == 'element':
            if len(tok) != 3 or not tok[2].isdigit():
                raise _err(path, f'header line {lineno}: bad element line '
                           f'{line.strip()!r}')
            elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == 'property':
            if not elements:
                raise _err(path, f'header line {lineno}: property before '
                           'any element')
            if len(tok) == 5 and tok[1] == 'list':
                if tok[2] not in PLY_TYPES or tok[3] not in PLY_TYPES:
                    raise _err(path, f'header line {lineno}: unknown list '
                               f'type in {line.strip()!r}')
                elements[-1][2].append(
                    (tok[4], (PLY_TYPES[tok[2]], PLY_TYPES[tok[3]])))
            elif len(tok) == 3 and tok[1] in PLY_TYPES:
                elements[-1][2].append((tok[2], PLY_TYPES[tok[1]]))
            else:
                raise _err(path, f'header line {lineno}: bad property line '
                           f'{line.strip()!r}')
        else:
            raise _err(path, f'header line {lineno}: unexpected '
                       f'{line.strip()!r}')
    if fmt is None:
        raise _err(path, 'PLY header has no "format" line')
    return fmt, elements, nl + 1


def _binary_element(path, raw, pos, name, count, props, bo):
    """Parse one binary element; return ``(columns, new_pos)``."""
    if count == 0:
        return {p: np.zeros(0) for p, _ in props}, pos
    fields = []
    lists = [(p, t) for p, t in props if isinstance(t, tuple)]
    if lists:
        # Rows have a uniform length (triangles, or uniform polygons) in
        # every mesh we read; read the first row's counts to get that length,
        # parse the element as fixed-size records and verify every count.
        off, lens = pos, {}
        for p, t in props:
            if isinstance(t, tuple):
                cdt = np.dtype(bo + t[0])
                if off + cdt.itemsize > len(raw):
                    raise _err(path, f'truncated in element {name!r}')
                k = int(np.frombuffer(raw, cdt, 1, off)[0])
                lens[p] = k
                off += cdt.itemsize + k * np.dtype(t[1]).itemsize
            else:
                off += np.dtype(t).itemsize
    for p, t in props:
        if isinstance(t, tuple):
            fields.append((p + '__n', bo + t[0]))
            fields.append((p, bo + t[1], (lens[p],)))
        else:
            fields.append((p, bo + t))
    dt = np.dtype(fields)
    need = dt.itemsize * count
    if pos + need > len(raw):
        raise _err(path, f'truncated: element {name!r} needs {need} bytes '
                   f'for {count} rows, {len(raw) - pos} left')
    rec = np.frombuffer(raw, dt, count, pos)
    cols = {}
    for p, t in props:
        if isinstance(t, tuple):
            if np.any(rec[p + '__n'] != lens[p]):
                raise _err(path, f'element {name!r}: list {p!r} has rows of '
                           'different lengths; only uniform lists (e.g. all '
                           'triangles) are supported')
        cols[p] = rec[p]
    return cols, pos + need


# the bytes ``bytes.split()`` splits on: space, \t, \n, \v, \f, \r
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True


def _values_per_line(body):
    """Number of whitespace-separated values on each line of ``body``
    ((lines,) int64), counted without a Python loop over lines."""
    b = np.frombuffer(body, dtype=np.uint8)
    ws = _WHITESPACE[b]
    starts = ~ws
    starts[1:] &= ws[:-1]                  # first byte of each value
    newlines = np.flatnonzero(b == 10)
    line = np.searchsorted(newlines, np.flatnonzero(starts))
    return np.bincount(line, minlength=newlines.size + 1)


def _bad_token_error(path, body, first_line):
    """The error for an ascii body that holds a non-number (error path:
    a loop over lines is fine here)."""
    for i, ln in enumerate(body.split(b'\n')):
        for tok in ln.split():
            try:
                float(tok)
            except ValueError:
                word = tok[:20].decode('ascii', errors='replace')
                return _err(path, f'line {first_line + i}: value {word!r} '
                            'is not a number')
    return _err(path, 'ascii PLY body has a token that is not a number')


def _row_error(path, name, props, lens, row, nvals, width, lineno):
    """Why one ascii row of element ``name`` has ``nvals`` values instead of
    ``width`` (``row``: its values)."""
    off = 0
    for p, t in props:
        if isinstance(t, tuple):
            if off < len(row) and int(row[off]) != lens[p]:
                return _err(path, f'line {lineno}: element {name!r}: list '
                            f'{p!r} has {int(row[off])} items here and '
                            f'{lens[p]} in the first row; rows of different '
                            'lengths are not supported (only uniform lists, '
                            'e.g. all triangles)')
            off += 1 + lens[p]
        else:
            off += 1
    names = ' '.join(p for p, _ in props)
    return _err(path, f'line {lineno}: {nvals} values, expected {width} '
                f'(one row of element {name!r}: {names})')


def _ascii_elements(path, raw, pos, elements):
    """Parse every element of an ascii body from one token array.

    Each non-blank line is one row: a line with a value too many or too few
    is refused by its line number (a token stream alone would shift every
    later row by one value).
    """
    body = raw[pos:]
    first_line = raw[:pos].count(b'\n') + 1  # file line of the body's start
    try:
        tokens = np.array(body.split(), dtype=np.float64)
    except ValueError:
        raise _bad_token_error(path, body, first_line) from None
    per_line = _values_per_line(body)
    lines = np.flatnonzero(per_line)       # body lines that hold values
    out, r0, t0 = {}, 0, 0
    for name, count, props in elements:
        if count == 0:
            out[name] = {p: np.zeros(0) for p, _ in props}
            continue
        if r0 + count > lines.size:
            raise _err(path, f'truncated: element {name!r} has {count} rows '
                       f'in the header, the file ends after '
                       f'{lines.size - r0} of them (line '
                       f'{first_line + (lines[-1] if lines.size else 0)})')
        rows = lines[r0:r0 + count]
        nvals = per_line[rows]
        # the first row fixes the row width (uniform lists, as in binary)
        width, lens, off = 0, {}, t0
        for p, t in props:
            if isinstance(t, tuple):
                k = int(tokens[off]) if off < tokens.size else 0
                lens[p] = k
                off += 1 + k
                width += 1 + k
            else:
                off += 1
                width += 1
        bad = np.flatnonzero(nvals != width)
        if bad.size:
            i = int(bad[0])
            start = t0 + int(nvals[:i].sum())
            raise _row_error(path, name, props, lens,
                             tokens[start:start + nvals[i]], int(nvals[i]),
                             width, first_line + int(rows[i]))
        need = width * count
        block = tokens[t0:t0 + need].reshape(count, width)
        cols, c = {}, 0
        for p, t in props:
            if isinstance(t, tuple):
                # a row whose count disagrees although its width fits
                # (e.g. "4 0 1 2" among triangles)
                bad = np.flatnonzero(block[:, c] != lens[p])
                if bad.size:
                    i = int(bad[0])
                    raise _row_error(path, name, props, lens, block[i],
                                     width, width, first_line + int(rows[i]))
                cols[p] = block[:, c + 1:c + 1 + lens[p]].astype(t[1])
                c += 1 + lens[p]
            else:
                cols[p] = block[:, c].astype(t)
                c += 1
        out[name] = cols
        t0 += need
        r0 += count
    if r0 < lines.size:
        raise _err(path, f'line {first_line + int(lines[r0])}: '
                   f'{lines.size - r0} line(s) of values after the last '
                   'element (the header counts '
                   + ', '.join(f'{c} {n}' for n, c, _ in elements) + ')')
    return out


def read_ply(path):
    """Read every element of a PLY file.

    Returns:
        dict: element name -> dict of property name -> array. Scalar
        properties are ``(count,)`` arrays of their PLY type; list
        properties are ``(count, K)`` arrays.
    """
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except OSError as e:
        raise _err(path, f'cannot read: {e.strerror or e}') from None
    fmt, elements, pos = _parse_header(path, raw)
    bo = _FORMATS[fmt]
    if bo is None:
        return _ascii_elements(path, raw, pos, elements)
    out = {}
    for name, count, props in elements:
        out[name], pos = _binary_element(path, raw, pos, name, count, props,
                                         bo)
    return out


def _first(cols, names):
    name = _first_name(cols, names)
    return None if name is None else cols[name]


def _first_name(cols, names):
    for n in names:
        if n in cols:
            return n
    return None


#: Field names read as the per-point intensity, in order of preference;
#: matched without regard to case (``Intensity``, ``scalar_Intensity``).
INTENSITY_NAMES = ('intensity', 'scalar_intensity')


def find_intensity(names):
    """The name among ``names`` (PLY properties, ``.npz`` keys) that holds
    the intensity (:data:`INTENSITY_NAMES`, any case), or None."""
    lower = {}
    for n in names:
        lower.setdefault(str(n).lower(), n)
    for want in INTENSITY_NAMES:
        if want in lower:
            return lower[want]
    return None


def color_to_uint8(rgb):
    """(N, 3) colours of any numeric type -> uint8 0..255.

    Floats are taken as 0..1 when none exceeds 1 (the PLY convention for
    float colours) and as 0..255 otherwise; 16-bit integers are scaled down.
    """
    if rgb.dtype.kind == 'f':
        rgb = rgb.astype(np.float64)
        if rgb.size and np.nanmax(rgb) <= 1.0:
            rgb = rgb * 255.0
        return np.clip(np.rint(np.nan_to_num(rgb)), 0, 255).astype(np.uint8)
    if rgb.dtype.itemsize > 1 and rgb.size and rgb.max() > 255:
        return (rgb.astype(np.float64) / 257.0).round().clip(
            0, 255).astype(np.uint8)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def read_ply_points(path):
    """Read a PLY point cloud or mesh as per-vertex arrays.

    Returns:
        dict with ``coord (N, 3) float64``, ``color (N, 3) uint8`` or None,
        ``normal (N, 3) float32`` or None, ``label (N,) int64`` or None (the
        raw ``label`` property, unmapped), ``intensity (N,) float32`` or
        None (the ``intensity`` / ``scalar_intensity`` property, any case,
        at the file's own scale), ``faces (F, 3) int64`` or None (polygons
        are fan-triangulated) and ``ignored`` (tuple of the vertex
        properties present but not read, e.g. ``('curvature', 'alpha')``).
    """
    path = os.fspath(path)
    data = read_ply(path)
    if 'vertex' not in data:
        raise _err(path, 'no "vertex" element')
    v = data['vertex']
    if not all(k in v for k in 'xyz'):
        raise _err(path, f'vertex element lacks x, y, z (has '
                   f'{", ".join(v) or "nothing"})')
    used = {'x', 'y', 'z'}
    coord = np.stack([v['x'], v['y'], v['z']], 1).astype(np.float64)
    n = coord.shape[0]
    color = normal = label = intensity = None
    rgb_names = [_first_name(v, (c, c[0], 'diffuse_' + c))
                 for c in ('red', 'green', 'blue')]
    if all(rgb_names):  # a partial colour triple is not read
        used.update(rgb_names)
        color = color_to_uint8(np.stack([v[c] for c in rgb_names], 1))
    nrm_names = [_first_name(v, (c, 'normal_' + c[1]))
                 for c in ('nx', 'ny', 'nz')]
    if all(nrm_names):
        used.update(nrm_names)
        normal = np.stack([v[c] for c in nrm_names], 1).astype(np.float32)
    if 'label' in v:
        used.add('label')
        label = v['label']
        if label.dtype.kind == 'f' and not np.all(np.isfinite(label)):
            raise _err(path, 'label property has NaN/Inf values')
        label = label.astype(np.int64)
    name = find_intensity(v)
    if name is not None:
        used.add(name)
        intensity = np.asarray(v[name]).reshape(n).astype(np.float32)
    ignored = tuple(k for k in v if k not in used)
    faces = None
    fe = data.get('face')
    if fe is not None:
        idx = _first(fe, ('vertex_indices', 'vertex_index'))
        if idx is None:
            raise _err(path, 'face element has no vertex_indices / '
                       'vertex_index list')
        idx = np.asarray(idx, dtype=np.int64).reshape(len(idx), -1)
        if idx.shape[1] < 3 and idx.shape[0]:
            raise _err(path, f'faces have {idx.shape[1]} vertices; need >= 3')
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise _err(path, f'face vertex index out of range [0, {n}): '
                       f'min {idx.min()}, max {idx.max()}')
        k = idx.shape[1]
        # fan triangulation: (v0, v_j, v_{j+1}) for j = 1 .. K-2
        j = np.arange(1, k - 1)
        faces = np.stack([np.repeat(idx[:, :1], k - 2, 1), idx[:, j],
                          idx[:, j + 1]], 2).reshape(-1, 3)
    return dict(coord=coord, color=color, normal=normal, label=label,
                intensity=intensity, faces=faces, ignored=ignored)


def write_ply(path, coord, color=None, normal=None, label=None, faces=None,
              binary=True, byte_order='<', coord_dtype='f4',
              color_dtype='u1', label_dtype='i4', label_name='label',
              face_index_dtype='i4', extra=None):
    """Write a point cloud / mesh as PLY.

    Args:
        coord (N, 3): vertex positions, written as ``coord_dtype`` ('f4'
            float or 'f8' double).
        color (N, 3) or None: written as ``color_dtype`` ('u1', or 'f4' in
            0..1: uint8 input is divided by 255).
        normal (N, 3) or None: written as float ``nx ny nz``.
        label (N,) or None: written as property ``label_name`` of
            ``label_dtype`` (any PLY numeric type code, e.g. 'u2', 'f4').
        faces (F, K) or None: integer vertex indices, written as
            ``vertex_indices`` (uchar count + ``face_index_dtype``).
        binary: binary (``byte_order`` '<' or '>') or ascii.
        extra: optional dict name -> (N,) array of additional properties
            (readers must ignore them).
    """
    coord = np.asarray(coord)
    n = coord.shape[0]
    cols = [(c, coord_dtype, coord[:, i]) for i, c in enumerate('xyz')]
    if normal is not None:
        normal = np.asarray(normal)
        cols += [(c, 'f4', normal[:, i]) for i, c in
                 enumerate(('nx', 'ny', 'nz'))]
    if color is not None:
        color = np.asarray(color)
        if np.dtype(color_dtype).kind == 'f' and color.dtype.kind in 'ui':
            color = color / 255.0
        cols += [(c, color_dtype, color[:, i]) for i, c in
                 enumerate(('red', 'green', 'blue'))]
    if label is not None:
        cols.append((label_name, label_dtype, np.asarray(label)))
    for k, a in (extra or {}).items():
        a = np.asarray(a)
        cols.append((k, a.dtype.str[1:], a))
    fmt = ('ascii' if not binary else
           'binary_little_endian' if byte_order == '<' else
           'binary_big_endian')
    lines = ['ply', f'format {fmt} 1.0', 'comment written by dbbd',
             f'element vertex {n}']
    lines += [f'property {_NP_TO_PLY[np.dtype(t).str[1:]]} {c}'
              for c, t, _ in cols]
    if faces is not None:
        faces = np.asarray(faces)
        lines += [f'element face {faces.shape[0]}',
                  'property list uchar '
                  f'{_NP_TO_PLY[np.dtype(face_index_dtype).str[1:]]} '
                  'vertex_indices']
    lines.append('end_header')
    head = ('\n'.join(lines) + '\n').encode('ascii')
    with open(path, 'wb') as f:
        f.write(head)
        if binary:
            bo = byte_order
            rec = np.empty(n, np.dtype([(c, bo + np.dtype(t).str[1:])
                                        for c, t, _ in cols]))
            for c, _, a in cols:
                rec[c] = a
            f.write(rec.tobytes())
            if faces is not None:
                k = faces.shape[1]
                fr = np.empty(faces.shape[0], np.dtype(
                    [('n', 'u1'),
                     ('v', bo + np.dtype(face_index_dtype).str[1:], (k,))]))
                fr['n'] = k
                fr['v'] = faces
                f.write(fr.tobytes())
        else:
            # one format string per column keeps floats exact (repr) and
            # ints integral
            table = np.empty((n, len(cols)), dtype=object)
            for i, (_, t, a) in enumerate(cols):
                table[:, i] = (a.astype(np.float64).tolist()
                               if np.dtype(t).kind == 'f' else
                               a.astype(np.int64).tolist())
            f.write(''.join(' '.join(map(repr, r)) + '\n'
                            for r in table.tolist()).encode('ascii'))
            if faces is not None:
                f.write(''.join(
                    f'{faces.shape[1]} ' + ' '.join(map(str, r)) + '\n'
                    for r in faces.astype(np.int64).tolist()).encode(
                        'ascii'))
