"""CB-InternImage: upstream key names and sizes (docs/checkpoints.md) and the composite forward."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from mmdet_custom.models.backbones.cbnet import CBInternImage
from mmdet_custom.models.backbones.intern_image import INTERN_IMAGE_VARIANTS, InternImage

OUT_INDICES = [(0, 1, 2, 3), (1, 2, 3)]  # the CB-H configs' value
SMALL = dict(channels=32, depths=[1, 1, 2, 1], groups=[2, 4, 8, 16], drop_path_rate=0.0, layer_scale=1.0)
# Released CB-H checkpoint (docs/checkpoints.md): parameter and state_dict key counts; H's key count.
CB_H_PARAMS, CB_H_KEYS, H_KEYS = 2_152_954_720, 2678, 1335
# docs/checkpoints.md: (i, j) pairs of cb_linears that are 1x1 convs (j = 0 is an Identity).
CB_LINEAR_CONVS = [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 1)]


def build_cb(on_meta: bool = False, **kwargs) -> CBInternImage:
    if on_meta:
        with torch.device('meta'):
            return CBInternImage(**kwargs)
    return CBInternImage(**kwargs)


def randomize_(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            leaf = name.rsplit('.', 1)[-1]
            if leaf.startswith('gamma'):
                param.copy_(0.5 + 0.1 * noise)
            elif 'norm' in name and leaf == 'weight':
                param.copy_(1 + 0.1 * noise)
            else:
                fan_in = param[0].numel() if param.dim() > 1 else 1
                param.copy_(noise / fan_in ** 0.5)


def test_cb_h_keys_shapes_and_size():
    h_cfg = INTERN_IMAGE_VARIANTS['H']
    model = build_cb(on_meta=True, out_indices=OUT_INDICES, **h_cfg)
    with torch.device('meta'):
        single = InternImage(**h_cfg)
    h_table = {k: tuple(v.shape) for k, v in single.state_dict().items()}
    assert len(h_table) == H_KEYS  # the H table itself is checked key by key in test_intern_image.py

    widths = [320 * 2 ** i for i in range(4)]
    expected = {f'cb_modules.0.{k}': s for k, s in h_table.items()}
    expected.update({f'cb_modules.1.{k}': s for k, s in h_table.items() if not k.startswith('patch_embed.')})
    expected.update({f'cb_modules.1.gamma{i}': (widths[i],) for i in range(4)})
    for i, j in CB_LINEAR_CONVS:
        expected[f'cb_linears.{i}.{j}.weight'] = (widths[i], widths[i + j], 1, 1)
        expected[f'cb_linears.{i}.{j}.bias'] = (widths[i],)

    state = model.state_dict()
    got = {k: tuple(v.shape) for k, v in state.items()}
    assert sorted(set(got) ^ set(expected)) == []
    assert got == expected
    assert len(state) == CB_H_KEYS
    assert sum(v.numel() for v in state.values()) == CB_H_PARAMS


def _reference_cb_forward(model: CBInternImage, img: torch.Tensor):
    """The CB forward (docs/checkpoints.md), written against copy 0 as a standalone InternImage and copy 1's stages."""
    first, second = model.cb_modules
    standalone = InternImage(**SMALL, out_indices=(0, 1, 2, 3)).eval()
    standalone.load_state_dict(first.state_dict())
    with torch.no_grad():
        feats0 = standalone(img)
        x = first.pos_drop(first.patch_embed(img))
        H_s, W_s = x.shape[1:3]
        outs1 = []
        for i, level in enumerate(second.levels):
            size = (H_s // 2 ** i, W_s // 2 ** i)
            feed = 0
            for j in range(4 - i):
                f = feats0[i + j]
                if j > 0:
                    conv = model.cb_linears[i][j]
                    f = F.conv2d(f, conv.weight, conv.bias)
                feed = feed + F.interpolate(f, size=size, mode='nearest')
            gamma = getattr(second, f'gamma{i}').half().float()  # upstream's fp16 cast of the gate
            x = x + gamma * feed.permute(0, 2, 3, 1)
            x, x_ = level(x, return_wo_downsample=True)
            if i in OUT_INDICES[1]:
                outs1.append(x_.permute(0, 3, 1, 2))
    return feats0[1:], outs1


def test_forward_matches_reference():
    model = CBInternImage(out_indices=OUT_INDICES, **SMALL).eval()
    randomize_(model, seed=11)
    with torch.no_grad():  # a gate value that float16 cannot represent exactly
        model.cb_modules[1].gamma2.fill_(0.1 + 1e-5)
    img = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        outs0, outs1 = model(img)
    ref0, ref1 = _reference_cb_forward(model, img)
    assert isinstance(outs0, tuple) and isinstance(outs1, tuple) and len(outs0) == len(outs1) == 3
    for got, want in zip(outs0 + outs1, ref0 + ref1):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert [o.shape[1] for o in outs1] == [64, 128, 256]


def test_zero_gammas_make_copy_one_a_plain_backbone_on_the_shared_stem():
    model = CBInternImage(out_indices=OUT_INDICES, **SMALL).eval()  # gammas start at zero
    standalone = InternImage(**SMALL, out_indices=(1, 2, 3)).eval()
    state = {k: v for k, v in model.cb_modules[1].state_dict().items() if not k.startswith('gamma')}
    state.update({k: v for k, v in model.cb_modules[0].state_dict().items() if k.startswith('patch_embed.')})
    standalone.load_state_dict(state)
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, outs1 = model(img)
        expected = standalone(img)
    for got, want in zip(outs1, expected):
        torch.testing.assert_close(got, want)


def test_odd_input_size_runs():
    model = CBInternImage(out_indices=OUT_INDICES, **SMALL).eval()
    randomize_(model, seed=13)
    with torch.no_grad():
        outs0, outs1 = model(torch.randn(1, 3, 65, 97))
    assert [tuple(o.shape[-2:]) for o in outs1] == [(9, 13), (5, 7), (3, 4)]


def test_backward_and_train_returns_self():
    model = CBInternImage(out_indices=OUT_INDICES, with_cp=True, **SMALL)
    randomize_(model, seed=14)
    assert model.train() is model
    outs0, outs1 = model(torch.randn(1, 3, 32, 32))
    sum(o.sum() for o in outs0 + outs1).backward()
    assert model.cb_linears[0][3].weight.grad is not None
    assert model.cb_modules[1].gamma0.grad is not None
    assert model.cb_modules[0].patch_embed.conv1.weight.grad is not None


def test_frozen_stages_apply_to_both_copies():
    model = CBInternImage(out_indices=OUT_INDICES, frozen_stages=1, **SMALL).train()
    first, second = model.cb_modules
    assert not first.patch_embed.training and not first.levels[0].training and not second.levels[0].training
    assert all(not p.requires_grad for p in second.levels[0].parameters())
    assert second.levels[1].training and all(p.requires_grad for p in second.levels[1].parameters())


def test_bad_out_indices_named():
    with pytest.raises(ValueError, match='out_indices'):
        CBInternImage(out_indices=(0, 1, 2, 3), **SMALL)
    with pytest.raises(TypeError, match='cb_typo'):
        CBInternImage(out_indices=OUT_INDICES, cb_typo=1, **SMALL)


def test_registry_builds_it():
    from mmdet.models import build_backbone
    model = build_backbone(dict(type='CBInternImage', out_indices=OUT_INDICES, **SMALL))
    assert isinstance(model, CBInternImage)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_pretrained_init_loads_both_copies(tmp_path):
    from mmdet.utils import get_root_logger
    source = InternImage(**SMALL)
    randomize_(source, seed=15)
    path = tmp_path / 'cls.pth'
    torch.save({'model': {**source.state_dict(), 'head.weight': torch.zeros(3, 256)}}, path)
    model = CBInternImage(out_indices=OUT_INDICES, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **SMALL)
    handler = _Records()
    get_root_logger().addHandler(handler)
    try:
        model.init_weights()
    finally:
        get_root_logger().removeHandler(handler)
    for copy in model.cb_modules:
        for key, value in copy.state_dict().items():
            if not key.startswith('gamma'):
                assert torch.equal(value, source.state_dict()[key]), key
    # Copy 1 has no stem and extra gates: reported by name, as upstream's loader does.
    report = '\n'.join(handler.messages)
    assert 'gamma0' in report and 'patch_embed.conv1.weight' in report


def test_gates_are_rounded_to_half_precision_as_upstream():
    model = CBInternImage(out_indices=OUT_INDICES, **SMALL).eval()
    randomize_(model, seed=16)
    second = model.cb_modules[1]
    x = torch.randn(1, 8, 8, 32)
    feeds = [torch.randn(1, 8 // 2 ** i, 8 // 2 ** i, 32 * 2 ** i) for i in range(4)]
    third = torch.tensor(1 / 3)
    rounded = third.half().float()
    assert rounded != third
    outputs = []
    for value in (third, rounded):
        with torch.no_grad():
            for i in range(4):
                getattr(second, f'gamma{i}').fill_(value)
            outputs.append(second.forward_stages(x, feeds)[0])
    for a, b in zip(*outputs):
        assert torch.equal(a, b)
