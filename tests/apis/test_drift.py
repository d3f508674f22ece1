"""How far fine-tuning moved a backbone (dbbd.apis.drift and
tools/weight_drift.py): the change and cosine computed by hand, the start
read through pretrained= as a fine-tune reads it, the run's config read
from the checkpoint, and one-line errors."""
import copy
import json
import math

import pytest
import torch

from tiny import SEG_DEMO, TINY_SEG_MODEL


def test_change_and_cosine_by_hand():
    from dbbd.apis.drift import format_drift, weight_drift
    start = {'w': torch.tensor([[3.0, 4.0]]), 'b': torch.tensor([1.0]),
             'z': torch.zeros(2)}
    end = {'w': torch.tensor([[3.0, 9.0]]), 'b': torch.tensor([0.0]),
           'z': torch.ones(2), 'extra': torch.ones(3)}
    got = weight_drift(start, end)
    w, b, z = got['rows']
    assert [r['name'] for r in got['rows']] == ['w', 'b', 'z']
    # |(0, 5)| / |(3, 4)| = 1; cos = (9 + 36) / (5 * sqrt(90))
    assert w['change'] == pytest.approx(1.0)
    assert w['cosine'] == pytest.approx(45 / (5 * math.sqrt(90)))
    assert w['start_norm'] == pytest.approx(5.0) and w['dims'] == 2
    assert b['change'] == pytest.approx(1.0) and b['cosine'] is None
    assert z['change'] is None and z['cosine'] is None  # zero start
    t = got['total']
    # every tensor together: |d|^2 = 25 + 1 + 2, |s|^2 = 26, s.e = 45,
    # |e|^2 = 90 + 0 + 2
    assert t['numel'] == 5
    assert t['change'] == pytest.approx(math.sqrt(28 / 26))
    assert t['cosine'] == pytest.approx(45 / math.sqrt(26 * 92))
    text = format_drift(got)
    assert '| w | 2 | 5.000 | 1.00 | 0.95 |' in text
    assert '| b |' not in text  # one-dimensional: in the total only
    assert text.splitlines()[-1].endswith(
        f"| 5 | {math.sqrt(26):.3f} | 1.04 | 0.92 |")

    with pytest.raises(ValueError, match="'w' is \\(1, 2\\) at the start "
                       "and \\(2,\\)") as err:
        weight_drift(start, dict(end, w=torch.ones(2)))
    assert '\n' not in str(err.value)
    with pytest.raises(ValueError, match="no tensor 'b'"):
        weight_drift(start, {'w': end['w']})
    with pytest.raises(ValueError, match='no parameter tensor'):
        weight_drift({}, end)


def _cfg(root):
    from dbbd.apis.probe import load_config
    return load_config(SEG_DEMO['ft'], dict(
        data_root=root, model=copy.deepcopy(TINY_SEG_MODEL)))


def test_tool_reads_the_start_as_the_fine_tune_did(demo_root, tmp_path,
                                                   capsys):
    from dbbd.apis.probe import build_segmentor
    from tools.weight_drift import main
    cfg = _cfg(demo_root)
    model = build_segmentor(cfg, None, seed=3)
    params = dict(model.backbone.named_parameters())
    buffers = dict(model.backbone.named_buffers())
    # the pre-trained weights: the initialisation plus 1 (loaded through
    # pretrained=, as a fine-tune loads them)
    pre = str(tmp_path / 'pre.pth')
    torch.save(dict(state_dict={
        f'backbone.{k}': v.detach() + 1
        for k, v in {**params, **buffers}.items()}), pre)
    # the fine-tuned weights: every parameter doubled, the first negated
    first = next(iter(params))
    end = {k: (-1 if k == first else 2) * (v.detach() + 1)
           for k, v in params.items()}
    ft_cfg = copy.deepcopy(cfg)
    ft_cfg.pretrained = pre
    ft = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(cfg=ft_cfg.pretty_text), state_dict={
        **{f'backbone.{k}': v for k, v in end.items()},
        'head.weight': torch.ones(2, 2)}), ft)

    main([ft, '--json'])
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got['pretrained'] == pre
    assert [r['name'] for r in got['rows']] == list(params)
    dd = ss = se = ee = 0.0
    for (k, v), row in zip(params.items(), got['rows']):
        s = (v.detach() + 1).double()
        e = end[k].double()
        dd += float(((e - s) ** 2).sum())
        ss += float((s * s).sum())
        se += float((s * e).sum())
        ee += float((e * e).sum())
        want = 2.0 if k == first else 1.0
        assert row['change'] == pytest.approx(want)
        assert row['cosine'] == pytest.approx(-1.0 if k == first else 1.0)
    assert got['total']['change'] == pytest.approx(math.sqrt(dd / ss))
    assert got['total']['cosine'] == pytest.approx(se / math.sqrt(ss * ee))

    # a DDP-wrapped run's keys ('module.backbone.*') read the same
    wrapped = str(tmp_path / 'ddp.pth')
    torch.save(dict(meta=dict(cfg=ft_cfg.pretty_text), state_dict={
        f'module.backbone.{k}': v for k, v in end.items()}), wrapped)
    main([wrapped, '--json'])
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again['total'] == got['total']

    # the table; --pretrained overrides the run's
    main([ft, '--pretrained', pre])
    out = capsys.readouterr().out
    assert f'{ft} against {pre}:' in out
    assert '| **backbone, every parameter** |' in out


def test_tool_errors_are_one_line(demo_root, tmp_path, capsys):
    from dbbd.apis.probe import build_segmentor
    from tools.weight_drift import main
    cfg = _cfg(demo_root)
    state = build_segmentor(cfg, None, seed=0).backbone.state_dict()
    scratch = str(tmp_path / 'scratch.pth')
    cfg.pretrained = None
    cfg.model.pretrained = None
    torch.save(dict(meta=dict(cfg=cfg.pretty_text), state_dict={
        f'backbone.{k}': v for k, v in state.items()}), scratch)
    no_backbone = str(tmp_path / 'pretraining.pth')
    torch.save(dict(state_dict={'encoder.w': torch.ones(1)}), no_backbone)
    cases = [
        ([scratch], 'trained from scratch'),
        ([scratch, '--pretrained', no_backbone], 'pretrained='),
        ([no_backbone, '--pretrained', scratch],
         'records no config'),
        ([no_backbone, '--pretrained', scratch, '--config', SEG_DEMO['ft']],
         'no backbone.* tensor'),
        ([str(tmp_path / 'missing.pth')], 'does not exist'),
    ]
    for argv, words in cases:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith('error: ') and words in err, (argv, err)
        assert err.count('\n') == 1, err
