"""The Runner's config is formatted once per content (``FormatOnceConfig``):
mmengine asks for the yapf-formatted text eight times in a one-epoch run."""
import copy

from mmengine.config import Config


def test_formatted_once_per_content_and_always_current(monkeypatch):
    import mmengine.config.config as config_module

    from dbbd.engine.runner import FormatOnceConfig
    calls = []
    format_code = config_module.FormatCode

    def counting(*args, **kwargs):
        calls.append(1)
        return format_code(*args, **kwargs)

    monkeypatch.setattr(config_module, 'FormatCode', counting)
    plain = Config(dict(model=dict(type='DBBD', width=8), seed=0))
    want = plain.pretty_text
    calls.clear()

    cfg = FormatOnceConfig.of(plain)
    assert cfg is not plain and FormatOnceConfig.of(cfg) is cfg
    assert [cfg.pretty_text for _ in range(3)] == [want] * 3
    assert len(calls) == 1
    assert '_formatted' not in cfg  # the cache is no config key
    # a changed config is formatted again, never served stale
    cfg.model.width = 16
    assert 'width=16' in cfg.pretty_text and len(calls) == 2
    # the Runner deep-copies its config: the copy keeps the class
    clone = copy.deepcopy(cfg)
    assert type(clone) is FormatOnceConfig
    assert clone.pretty_text == cfg.pretty_text
