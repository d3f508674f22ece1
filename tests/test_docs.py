"""The documentation holds together: README.md, docs/*.md and
configs/*/README.md.

- every relative link leads to a file or folder of the repository, and a
  link to a heading (``page.md#anchor``) to a heading that page has;
- every Python block is either run by a test (``<!-- snippet: NAME -->``,
  a test asks for ``snippet('NAME')``) or marked as an illustration
  (``<!-- snippet: fragment -->``); every named block is run by a test;
- every command of a ``bash`` block that calls a tool names scripts and
  configs that exist, and options that the tool defines (the shell
  launchers pass theirs to ``tools/train.py``);
- the small configs shown on the pages load.

The snippets that need training data or a checkpoint run in the tests of
their subject: ``tests/test_readme_encoder.py`` (docs/extending.md),
``tests/models/backbones/test_spunet.py`` (docs/models.md),
``tests/tools/test_export_vis.py`` (docs/evaluation.md) and
``tests/datasets/test_prepare.py`` (docs/get_started.md).
"""
import glob
import os.path as osp
import re
import shlex

import pytest
from doc_snippets import FRAGMENT, REPO, all_blocks, blocks, pages, snippet

_LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)')
_HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')


def _prose(page):
    """The page without its fenced blocks and inline code (whose brackets
    and hashes are not links or headings)."""
    with open(osp.join(REPO, page), encoding='utf-8') as f:
        lines = f.read().split('\n')
    for b in blocks(page):
        n = b.code.count('\n')  # body lines
        for i in range(b.line - 1, b.line + n + 1):
            lines[i] = ''
    return re.sub(r'`[^`\n]*`', '``', '\n'.join(lines))


def _slug(heading):
    """GitHub's anchor of a heading."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = text.replace('`', '').strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def _anchors(page):
    with open(osp.join(REPO, page), encoding='utf-8') as f:
        lines = f.read().split('\n')
    for b in blocks(page):  # a '# comment' in a code block is no heading
        for i in range(b.line - 1, b.line + b.code.count('\n') + 1):
            lines[i] = ''
    seen, out = {}, set()
    for line in lines:
        m = _HEADING.match(line)
        if m:
            slug = _slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f'{slug}-{n}')
    return out


def test_the_pages_are_found():
    found = pages()
    for page in ('README.md', 'docs/get_started.md', 'docs/configs.md',
                 'docs/models.md', 'docs/extending.md', 'docs/evaluation.md',
                 'docs/segmentation.md', 'docs/speed.md',
                 'docs/distributed.md', 'docs/reliability.md',
                 'docs/data_format.md', 'docs/layout.md',
                 'configs/dbbd/README.md', 'configs/scene_contrast/README.md'):
        assert page in found


def test_the_slug_is_githubs():
    assert _slug('The transfer table (`tools/transfer.py`)') == \
        'the-transfer-table-toolstransferpy'
    assert _slug('Does pre-training help? The transfer table') == \
        'does-pre-training-help-the-transfer-table'
    assert _slug('Sparse-convolution backbone (SpUNet)') == \
        'sparse-convolution-backbone-spunet'


@pytest.mark.parametrize('page', pages())
def test_every_relative_link_resolves(page):
    bad = []
    for target in _LINK.findall(_prose(page)):
        if re.match(r'[a-z][a-z0-9+.-]*:', target):  # https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        if path:
            full = osp.normpath(osp.join(REPO, osp.dirname(page), path))
            if not full.startswith(REPO) or not osp.exists(full):
                bad.append(f'{target}: no such file or folder')
                continue
            linked = osp.relpath(full, REPO)
        else:
            linked = page
        if anchor and linked.endswith('.md') and \
                anchor not in _anchors(linked):
            bad.append(f'{target}: {linked} has no heading #{anchor}')
    assert not bad, f'{page}: ' + '; '.join(bad)


def _test_sources():
    text = ''
    for path in glob.glob(osp.join(REPO, 'tests', '**', '*.py'),
                          recursive=True):
        with open(path, encoding='utf-8') as f:
            text += f.read()
    return text


def test_every_python_block_is_run_or_marked_as_a_fragment():
    tests = _test_sources()
    names = {}
    for b in all_blocks():
        if b.lang == 'python':
            assert b.name, (
                f'{b.page}:{b.line}: a Python block without '
                '<!-- snippet: NAME --> (run by a test that asks for '
                "snippet('NAME')) or <!-- snippet: fragment --> (not run)")
        if b.name and b.name != FRAGMENT:
            names.setdefault(b.name, []).append(f'{b.page}:{b.line}')
    for name, where in names.items():
        assert len(where) == 1, f'snippet {name!r} is marked twice: {where}'
        assert f"snippet('{name}')" in tests, (
            f'snippet {name!r} ({where[0]}) is run by no test')


def _commands(code):
    """The command lines of a bash block: continuations joined, comments
    and blank lines left out."""
    joined = re.sub(r'\\\n\s*', ' ', code)
    for line in joined.split('\n'):
        line = line.split(' # ')[0].strip()
        if line and not line.startswith('#'):
            yield line


def _tool_and_args(words):
    """``(tools/X.py, args)`` for a command that runs a tool; the shell
    scripts pass their extra arguments to tools/train.py."""
    for i, w in enumerate(words):
        if w == 'python' and i + 1 < len(words) and \
                words[i + 1].startswith('tools/'):
            return words[i + 1], words[i + 2:]
        if w.startswith('tools/') and w.endswith('.sh'):
            return w, words[i + 1:]
    return None, []


def _defined_options(tool):
    """The ``--options`` a tool's source spells out (its argparse parser
    is in the script itself; a shell script passes its options on to the
    Python tool it runs: tools/transfer.py or tools/train.py)."""
    sources = [osp.join(REPO, tool)]
    if tool.endswith('.sh'):
        with open(sources[0], encoding='utf-8') as f:
            forwards = 'transfer.py' if 'transfer.py' in f.read() else \
                'train.py'
        sources.append(osp.join(REPO, 'tools', forwards))
    text = ''
    for path in sources:
        with open(path, encoding='utf-8') as f:
            text += f.read()
    return set(re.findall(r'''['"](--[a-z][a-z0-9_-]*)['"]''', text))


def _exists(path):
    """A file of the repository; a ``--seg-configs`` template
    (``{family}``, ``{protocol}``) names one when a family's three
    protocols all exist."""
    if '{' not in path:
        return osp.isfile(osp.join(REPO, path))
    return any(all(osp.isfile(osp.join(REPO, path.format(
        family=family, protocol=protocol)))
        for protocol in ('lin', 'ft', 'scratch'))
        for family in ('pointnet', 'spunet', 'ptv3'))


def test_tool_commands_name_what_exists():
    bad, checked = [], 0
    options = {}
    for b in all_blocks():
        if b.lang != 'bash':
            continue
        for line in _commands(b.code):
            words = shlex.split(line, posix=True)
            tool, args = _tool_and_args(words)
            if tool is None:
                continue
            checked += 1
            where = f'{b.page}:{b.line}: {line[:60]}'
            if not osp.isfile(osp.join(REPO, tool)):
                bad.append(f'{where}: no {tool}')
                continue
            if tool not in options:
                options[tool] = _defined_options(tool)
            for w in args:
                if re.fullmatch(r'(configs|tools)/\S+\.(py|sh)', w) and \
                        not w.startswith('configs/my/') and \
                        not _exists(w):
                    bad.append(f'{where}: no {w}')
                if w.startswith('--'):
                    opt = w.split('=')[0]
                    if opt not in options[tool]:
                        bad.append(f'{where}: {tool} has no option {opt}')
    assert checked > 40
    assert not bad, '\n'.join(bad)


def test_the_quick_start_test_command_is_what_ci_runs():
    with open(osp.join(REPO, '.ci', 'run')) as f:
        ci = [ln.strip() for ln in f if ln.strip() and
              not ln.startswith('#')]
    assert snippet('quick-start-tests').strip() == ci[-1]


def test_the_small_mode_child_config_loads():
    """docs/configs.md's child of small mode, with its base pointing at
    this checkout: batch 4 on top, the small-mode overrides kept."""
    from mmengine.config import Config
    code = snippet('small-bs4-config')
    base = "'../dbbd/dbbd_small_scannet.py'"
    assert base in code
    small = osp.join(REPO, 'configs', 'dbbd', 'dbbd_small_scannet.py')
    cfg = Config.fromstring(code.replace(base, repr(small)), '.py')
    parent = Config.fromfile(small)
    assert cfg.train_dataloader.batch_size == 4 != \
        parent.train_dataloader.batch_size
    assert cfg.train_dataloader.num_workers == 0
    assert cfg.model == parent.model
