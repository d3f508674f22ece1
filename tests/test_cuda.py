"""The GPU path: CPU/GPU agreement, AMP, gradient checkpointing.

The GPU tests skip cleanly without CUDA. The CPU tests next to them check
what can be checked without a GPU: the AMP config switch, the mixed
precision forward/backward through CPU autocast, and ``with_cp``.
"""
import copy
import importlib.util
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(REPO, 'configs', 'dbbd', 'dbbd_small_demo.py')

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason='needs a CUDA GPU')
DEVICES = ['cpu', pytest.param('cuda', marks=needs_cuda)]

from tiny import TINY_MODEL as TINY  # noqa: E402


@pytest.fixture(scope='module')
def demo_cfg():
    from mmengine.config import Config
    return Config.fromfile(DEMO)


def build_model(demo_cfg, seed=0, **overrides):
    from mmengine.config import Config

    from dbbd.registry import MODELS
    cfg = Config(dict(model=copy.deepcopy(demo_cfg.model.to_dict())))
    cfg.merge_from_dict({f'model.{k}': v for k, v in TINY.items()})
    cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    torch.manual_seed(seed)
    return MODELS.build(cfg.model.to_dict())


@pytest.fixture(scope='module')
def batches(demo_cfg, demo_root):
    """Collated training batches of the demo data (config pipeline,
    deterministic per (index, epoch, seed)), two scenes each."""
    from dbbd.datasets import dbbd_collate
    from dbbd.registry import DATASETS
    ds_cfg = copy.deepcopy(demo_cfg.train_dataloader.dataset.to_dict())
    ds_cfg.update(data_root=demo_root, auto_prepare=None)
    ds = DATASETS.build(ds_cfg)
    out = []
    for epoch in range(3):
        for first in (0, 2):
            out.append(dbbd_collate([ds[(first, epoch, 0)],
                                     ds[(first + 1, epoch, 0)]]))
    return out


def loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    data = model.data_preprocessor(copy.deepcopy(batch), training=True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    grads = {n: p.grad.detach().float().cpu().clone()
             for n, p in model.named_parameters() if p.grad is not None}
    return ({k: float(v.detach()) for k, v in log_vars.items()}, grads)


def assert_grads_close(got, want, tol):
    assert set(got) == set(want)
    for name in want:
        err = (got[name] - want[name]).norm()
        scale = want[name].norm().clamp(min=1e-8)
        assert float(err / scale) < tol, (name, float(err / scale))


@pytest.fixture
def exact_fp32():
    """No TF32 matmuls/convolutions while comparing with the CPU."""
    if not CUDA:
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32,
           torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    (torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = old


# ----------------------------------------------------------------------
# GPU
# ----------------------------------------------------------------------
@needs_cuda
def test_gpu_step_matches_cpu(demo_cfg, batches, exact_fp32):
    cpu = build_model(demo_cfg)
    gpu = copy.deepcopy(cpu).cuda()
    for batch in batches[:2]:
        lv_cpu, g_cpu = loss_and_grads(cpu, batch)
        lv_gpu, g_gpu = loss_and_grads(gpu, batch)
        assert lv_gpu == pytest.approx(lv_cpu, rel=1e-4, abs=1e-5)
        # relative to each gradient's norm: a segment max whose arg flips
        # between near-equal rows moves a little gradient elsewhere
        assert_grads_close(g_gpu, g_cpu, tol=1e-3)


@needs_cuda
@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_amp_trains_without_nan(demo_cfg, batches, dtype):
    from mmengine.optim import build_optim_wrapper

    from dbbd.engine.amp import amp_optim_wrapper
    if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bf16')
    model = build_model(demo_cfg).cuda()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapper = build_optim_wrapper(model, amp_optim_wrapper(
        dict(type='OptimWrapper',
             optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01)),
        dtype=dtype))
    seen = []
    # the encoder's MLP (called as a module): its output dtype
    handle = model.backbone.encoder.mlp.register_forward_hook(
        lambda m, a, out: seen.append(out.dtype))
    losses = []
    for batch in batches:
        log_vars = model.train_step(copy.deepcopy(batch), wrapper)
        assert all(torch.isfinite(torch.as_tensor(v)).all()
                   for v in log_vars.values()), log_vars
        losses.append(float(torch.as_tensor(log_vars['loss']).detach()))
    handle.remove()
    assert getattr(torch, dtype) in seen  # autocast really ran
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32, n  # master weights stay fp32
        assert torch.isfinite(p).all(), n
    assert any(not torch.equal(p, before[n])
               for n, p in model.named_parameters())
    if dtype == 'float16':
        assert 0 < wrapper.loss_scaler.get_scale() < float('inf')
    else:
        assert not wrapper.loss_scaler.is_enabled()


@needs_cuda
def test_gpu_training_step_does_not_synchronise(demo_cfg, batches):
    """Forward, backward and the AdamW step of a batch whose tree index
    the loader built: CUDA's sync debug mode reports no host
    synchronisation; the non-finite check's read-back is the only one."""
    import warnings
    from dbbd.engine.hooks.nonfinite_loss_hook import _to_host
    model = build_model(demo_cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i, batch in enumerate(batches[:3]):
        data = model.data_preprocessor(copy.deepcopy(batch), training=True)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try:
                opt.zero_grad(set_to_none=True)
                loss, log_vars = model.parse_losses(
                    model(**data, mode='loss'))
                loss.backward()
                opt.step()
                before_read = len(seen)
                host = _to_host(dict(log_vars), [])
            finally:
                torch.cuda.set_sync_debug_mode(0)
        def syncs(warns):  # not the notice that the mode is a prototype
            return [str(w.message) for w in warns
                    if 'called a synchronizing' in str(w.message)]
        assert syncs(seen[:before_read]) == [], (i, syncs(seen))
        assert len(syncs(seen[before_read:])) <= 1, syncs(seen)
        assert all(isinstance(v, float) for v in host.values())


@needs_cuda
def test_amp_switch_builds_amp_optim_wrapper(tmp_path):
    train = _load_train_script()
    args = train.parse_args([DEMO, '--work-dir', str(tmp_path),
                             '--cfg-options', 'amp=True'])
    cfg = train.build_config(args)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    want = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    assert cfg.optim_wrapper.dtype == want


# ----------------------------------------------------------------------
# gradient checkpointing (CPU and GPU)
# ----------------------------------------------------------------------
@pytest.mark.parametrize('device', DEVICES)
def test_with_cp_same_loss_and_grads(demo_cfg, batches, device, exact_fp32):
    plain = build_model(demo_cfg, **{"backbone.with_cp": False}).to(device)
    cp = build_model(demo_cfg, **{"backbone.with_cp": True}).to(device)
    cp.load_state_dict(plain.state_dict())
    assert cp.backbone.with_cp and not plain.backbone.with_cp
    for batch in batches[:2]:
        lv_plain, g_plain = loss_and_grads(plain, batch)
        lv_cp, g_cp = loss_and_grads(cp, batch)
        assert lv_cp == pytest.approx(lv_plain, rel=1e-6, abs=1e-7)
        assert_grads_close(g_cp, g_plain, tol=1e-5)


# ----------------------------------------------------------------------
# CPU stand-ins for the AMP path
# ----------------------------------------------------------------------
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_model_under_cpu_autocast(demo_cfg, batches, dtype):
    """Mixed precision forward/backward (the ops AMP runs on the GPU, no
    dtype clash between fp32 and low-precision tensors), through CPU
    autocast."""
    model = build_model(demo_cfg)
    ref, _ = loss_and_grads(model, batches[0])
    model.zero_grad(set_to_none=True)
    data = model.data_preprocessor(copy.deepcopy(batches[0]), training=True)
    with torch.autocast('cpu', dtype=dtype):
        losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    assert torch.isfinite(loss)
    assert float(loss.detach()) == pytest.approx(ref["loss"], rel=0.05)
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_amp_config_choice(monkeypatch):
    from dbbd.engine import amp
    base = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
                clip_grad=dict(max_norm=1.0))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: True)
    cfg = amp.amp_optim_wrapper(base)
    assert cfg == dict(base, type='AmpOptimWrapper', dtype='bfloat16',
                       loss_scale=dict(enabled=False))
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: False)
    cfg = amp.amp_optim_wrapper(base)
    assert cfg == dict(base, type='AmpOptimWrapper', dtype='float16',
                       loss_scale='dynamic')
    assert amp.amp_optim_wrapper(base, dtype='bfloat16')['dtype'] == \
        'bfloat16'
    with pytest.raises(ValueError):
        amp.amp_optim_wrapper(base, dtype='float64')
    assert base['type'] == 'OptimWrapper'  # not modified in place


@pytest.mark.skipif(CUDA, reason='AMP is allowed with a GPU')
def test_amp_switch_refused_without_gpu(tmp_path, capsys):
    train = _load_train_script()
    args = train.parse_args([DEMO, '--work-dir', str(tmp_path),
                             '--cfg-options', 'amp=True'])
    with pytest.raises(SystemExit) as e:
        train.build_config(args)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ')
    assert 'CUDA' in err[0]


def _load_train_script():
    spec = importlib.util.spec_from_file_location(
        'dbbd_train_script', osp.join(REPO, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
