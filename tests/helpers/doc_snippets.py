"""The code blocks of the documentation, found by name.

A page names a block with an HTML comment (invisible when rendered) on the
line before its opening fence::

    <!-- snippet: encoder-module -->
    ```python
    ...
    ```

The tests that run a block ask for it with ``snippet('encoder-module')``,
so a block can move between pages without breaking them.
``<!-- snippet: fragment -->`` marks an illustration that is not meant to
run (it names objects the page does not define); ``tests/test_docs.py``
requires every Python block to carry one of the two.

The pages: ``README.md``, ``docs/*.md`` and ``configs/*/README.md``.
"""
import glob
import os.path as osp
import re
from collections import namedtuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FRAGMENT = 'fragment'

_OPEN = re.compile(r'^([ \t]*)```(\S*)\s*$')
_CLOSE = re.compile(r'^[ \t]*```\s*$')
_MARK = re.compile(r'^\s*<!-- snippet: ([\w-]+) -->\s*$')

#: ``page`` relative to the repository, ``line`` of the opening fence
#: (1-based), ``lang`` as written after the fence ('' for none), ``name``
#: from the marker (None without), ``code`` without the fence's indent.
Block = namedtuple('Block', 'page line lang name code')


def pages():
    """The documentation pages, relative to the repository root."""
    found = [osp.join(REPO, 'README.md')]
    found += sorted(glob.glob(osp.join(REPO, 'docs', '*.md')))
    found += sorted(glob.glob(osp.join(REPO, 'configs', '*', 'README.md')))
    return [osp.relpath(p, REPO) for p in found if osp.isfile(p)]


def blocks(page):
    """Every fenced code block of ``page``, in order."""
    with open(osp.join(REPO, page), encoding='utf-8') as f:
        lines = f.read().split('\n')
    out, i = [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.groups()
        j = i + 1
        while j < len(lines) and not _CLOSE.match(lines[j]):
            j += 1
        assert j < len(lines), f'{page}:{i + 1}: code block never closed'
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip()
                for ln in lines[i + 1:j]]
        mark = _MARK.match(lines[i - 1]) if i else None
        out.append(Block(page, i + 1, lang, mark.group(1) if mark else None,
                         '\n'.join(body) + '\n'))
        i = j + 1
    return out


def all_blocks():
    return [b for page in pages() for b in blocks(page)]


def snippet(name):
    """The code of the one block named ``name``, on whichever page."""
    found = [b for b in all_blocks() if b.name == name]
    where = ', '.join(f'{b.page}:{b.line}' for b in found)
    assert len(found) == 1, (
        f'snippet {name!r}: expected one block marked '
        f'<!-- snippet: {name} --> in the documentation, found '
        f'{len(found)} ({where})')
    return found[0].code
