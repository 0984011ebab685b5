"""FlashInternImage backbone: released keys, shapes and sizes (T/S/B/L on the meta device), a tiny model against a
functional re-implementation written here (own bilinear sampler, own DCNv4 point loop), with_cp, frozen stages,
checkpoint loading, and the original's crash paths (no layer scale, non-square maps) working."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from mmdet_custom.models.backbones.flash_intern_image import FLASH_INTERN_IMAGE_VARIANTS, FlashInternImage
from tests.models.flash_intern_image_keys import (
    FLASH_BACKBONE_MILLIONS,
    FLASH_VARIANTS,
    expected_flash_backbone,
    expected_variant,
)


def build(on_meta: bool = False, **kwargs) -> FlashInternImage:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the fallback-core notice when ops_dcnv4 is not built
        if on_meta:
            with torch.device('meta'):
                return FlashInternImage(**kwargs)
        return FlashInternImage(**kwargs)


# -- released sizes ------------------------------------------------------------------------------------------------

def test_variant_table_matches_the_published_sizes():
    assert set(FLASH_INTERN_IMAGE_VARIANTS) == {'T', 'S', 'B', 'L'}
    for name, (channels, depths, groups, post_norm, dw, out_bias, fc2_bias, offset_scale) in FLASH_VARIANTS.items():
        variant = FLASH_INTERN_IMAGE_VARIANTS[name.upper()]
        assert (variant['channels'], variant['depths'], variant['groups']) == (channels, depths, groups)
        assert (variant['post_norm'], variant['dw_kernel_size'], variant['offset_scale']) == (post_norm, dw,
                                                                                             offset_scale)
        assert (variant['dcn_output_bias'], variant['mlp_fc2_bias'], variant['layer_scale']) == (out_bias, fc2_bias,
                                                                                                1.0)
        assert all(channels * 2 ** i // g == 16 for i, g in enumerate(groups))  # 16 channels per group


@pytest.mark.parametrize('name', ['t', 's', 'b', 'l'])
def test_released_keys_shapes_and_size(name):
    model = build(on_meta=True, **FLASH_INTERN_IMAGE_VARIANTS[name.upper()])
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = expected_variant(name)
    assert sorted(set(expected) - set(actual)) == [] and sorted(set(actual) - set(expected)) == []
    assert [k for k in expected if actual[k] != expected[k]] == []
    total = sum(p.numel() for p in model.parameters())
    assert round(total / 1e6, 2) == FLASH_BACKBONE_MILLIONS[name]


def test_from_variant_and_bad_arguments():
    model = FlashInternImage.from_variant('T', depths=[1, 1, 1, 1], drop_path_rate=0.0)
    assert model.depths == [1, 1, 1, 1] and model.core_op == 'DCNv4'
    with pytest.raises(ValueError, match=r"FlashInternImage: variant must be one of \['T', 'S', 'B', 'L'\]"):
        FlashInternImage.from_variant('XL')
    with pytest.raises(ValueError, match=r"FlashInternImage: core_op must be one of \['DCNv4'\], got 'DCNv3'"):
        build(core_op='DCNv3')
    with pytest.raises(TypeError, match="FlashInternImage got an unexpected keyword argument 'use_dcn_v4_op'"):
        build(use_dcn_v4_op=True)


# -- a functional re-implementation ----------------------------------------------------------------------------------

def bilinear_zeros(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (N, H, W, G, D) sampled at pixel coordinates h, w (N, Ho, Wo, G); corners outside the map read zero."""
    N, H, W, G, D = x.shape
    h0, w0 = h.floor(), w.floor()
    lh, lw = h - h0, w - w0
    n_idx = torch.arange(N).view(N, 1, 1, 1)
    g_idx = torch.arange(G).view(1, 1, 1, G)
    out = torch.zeros(*h.shape, D, dtype=x.dtype)
    for dh, dw, weight in ((0, 0, (1 - lh) * (1 - lw)), (0, 1, (1 - lh) * lw), (1, 0, lh * (1 - lw)), (1, 1, lh * lw)):
        hi, wi = h0 + dh, w0 + dw
        inside = (hi >= 0) & (hi <= H - 1) & (wi >= 0) & (wi <= W - 1)
        value = x[n_idx, hi.clamp(0, H - 1).long(), wi.clamp(0, W - 1).long(), g_idx]
        out = out + (weight * inside)[..., None] * value
    return out


def dcnv4_3x3(value: torch.Tensor, offset_mask: torch.Tensor, groups: int, offset_scale: float) -> torch.Tensor:
    """3x3, stride 1, pad 1, dilation 1; group g's channels of offset_mask: 9 (x, y) offset pairs then 9 raw masks;
    point p = 3 * column + row."""
    N, H, W, C = value.shape
    x = value.view(N, H, W, groups, C // groups)
    om = offset_mask[..., :groups * 27].reshape(N, H, W, groups, 27)
    rows = torch.arange(H, dtype=value.dtype).view(1, H, 1, 1)
    cols = torch.arange(W, dtype=value.dtype).view(1, 1, W, 1)
    out = torch.zeros_like(x)
    for column in range(3):
        for row in range(3):
            p = 3 * column + row
            w = cols + (column - 1 + om[..., 2 * p]) * offset_scale
            h = rows + (row - 1 + om[..., 2 * p + 1]) * offset_scale
            out = out + om[..., 18 + p, None] * bilinear_zeros(x, h, w)
    return out.reshape(N, H, W, C)


def reference_forward(sd: dict, img: torch.Tensor, channels: int, depths: list[int], groups: list[int],
                      post_norm: bool, dw_kernel_size: int | None, offset_scale: float) -> list[torch.Tensor]:
    def ln(t, key):
        return F.layer_norm(t, t.shape[-1:], sd[key + '.weight'], sd[key + '.bias'], eps=1e-6)

    def conv_ln(t, conv, norm):  # NCHW conv then LN over channels, channels-last out
        y = F.conv2d(t, sd[conv + '.weight'], sd.get(conv + '.bias'), stride=2, padding=1)
        return ln(y.permute(0, 2, 3, 1), norm)

    x = F.gelu(conv_ln(img, 'patch_embed.conv1', 'patch_embed.norm1.1').permute(0, 3, 1, 2))
    x = conv_ln(x, 'patch_embed.conv2', 'patch_embed.norm2.1')
    outs = []
    for i, depth in enumerate(depths):
        for j in range(depth):
            p = f'levels.{i}.blocks.{j}.'
            ones = torch.ones(x.shape[-1], dtype=x.dtype)
            gamma1, gamma2 = sd.get(p + 'gamma1', ones), sd.get(p + 'gamma2', ones)

            def dcn(t):
                value = F.linear(t, sd[p + 'dcn.value_proj.weight'], sd[p + 'dcn.value_proj.bias'])
                source = t
                if dw_kernel_size is not None:
                    source = F.conv2d(t.permute(0, 3, 1, 2), sd[p + 'dcn.offset_mask_dw.weight'],
                                      sd[p + 'dcn.offset_mask_dw.bias'], padding=dw_kernel_size // 2,
                                      groups=t.shape[-1]).permute(0, 2, 3, 1)
                offset_mask = F.linear(source, sd[p + 'dcn.offset_mask.weight'], sd[p + 'dcn.offset_mask.bias'])
                sampled = dcnv4_3x3(value, offset_mask, groups[i], offset_scale)
                return F.linear(sampled, sd[p + 'dcn.output_proj.weight'], sd.get(p + 'dcn.output_proj.bias'))

            def mlp(t):
                hidden = F.gelu(F.linear(t, sd[p + 'mlp.fc1.weight'], sd[p + 'mlp.fc1.bias']))
                return F.linear(hidden, sd[p + 'mlp.fc2.weight'], sd.get(p + 'mlp.fc2.bias'))

            if post_norm:
                x = x + gamma1 * ln(dcn(x), p + 'norm1.0')
                x = x + gamma2 * ln(mlp(x), p + 'norm2.0')
            else:
                x = x + gamma1 * dcn(ln(x, p + 'norm1.0'))
                x = x + gamma2 * mlp(ln(x, p + 'norm2.0'))
        if not post_norm:
            x = ln(x, f'levels.{i}.norm.0')
        outs.append(x.permute(0, 3, 1, 2))
        if i < len(depths) - 1:
            x = conv_ln(x.permute(0, 3, 1, 2), f'levels.{i}.downsample.conv', f'levels.{i}.downsample.norm.1')
    return outs


TINY = dict(channels=16, depths=[1, 1, 2, 1], groups=[1, 2, 4, 8], drop_path_rate=0.0)
TINY_CASES = {
    # T-like: pre-norm, stage norms, no depth-wise conv, bias-free output projection and fc2
    't_like': dict(layer_scale=1.0, post_norm=False, dw_kernel_size=None, dcn_output_bias=False, mlp_fc2_bias=False,
                   offset_scale=1.0),
    # L-like: post-norm, depth-wise conv, both biases, offset_scale 2
    'l_like': dict(layer_scale=1.0, post_norm=True, dw_kernel_size=3, dcn_output_bias=True, mlp_fc2_bias=True,
                   offset_scale=2.0),
    # no layer scale (the original raises TypeError here), B's offset_scale
    'no_layer_scale': dict(layer_scale=None, post_norm=False, dw_kernel_size=3, dcn_output_bias=False,
                           mlp_fc2_bias=True, offset_scale=0.5),
}


def randomised_tiny(case: str) -> FlashInternImage:
    torch.manual_seed(0)
    model = build(**TINY, **TINY_CASES[case]).double().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            # offset_mask starts at zero: randomise everything so that offsets move samples across pixels and
            # borders and masks differ per point
            std = 0.3 if 'offset_mask.' in name else 0.15
            param.copy_(torch.randn_like(param) * std + (1.0 if name.endswith(('norm1.0.weight', 'norm2.0.weight'))
                                                          else 0.0))
    return model


@pytest.mark.parametrize('case', sorted(TINY_CASES))
def test_tiny_forward_matches_functional_reimplementation(case):
    model = randomised_tiny(case)
    img = torch.randn(2, 3, 37, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = model(img)
    options = TINY_CASES[case]
    expected = reference_forward(model.state_dict(), img, TINY['channels'], TINY['depths'], TINY['groups'],
                                 options['post_norm'], options['dw_kernel_size'], options['offset_scale'])
    assert [tuple(o.shape) for o in outs] == [(2, 16, 10, 13), (2, 32, 5, 7), (2, 64, 3, 4), (2, 128, 2, 2)]
    for out, ref in zip(outs, expected, strict=True):
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    if options['layer_scale'] is None:
        assert not any('gamma' in k for k in model.state_dict())
    expected_keys = expected_flash_backbone(
        16, TINY['depths'], TINY['groups'], options['post_norm'], options['dw_kernel_size'],
        options['dcn_output_bias'], options['mlp_fc2_bias'], layer_scale=options['layer_scale'] is not None)
    assert set(model.state_dict()) == set(expected_keys)


def test_with_cp_gives_the_same_gradients():
    grads = []
    for with_cp in (False, True):
        model = randomised_tiny('l_like').train()
        for blk in (b for level in model.levels for b in level.blocks):
            blk.with_cp = with_cp
        img = torch.randn(1, 3, 32, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        sum(o.square().sum() for o in model(img)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


def test_frozen_stages_freeze_the_stem_and_first_levels():
    model = build(**TINY, layer_scale=1.0, frozen_stages=1).train()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(('patch_embed.', 'levels.0.')) for n in frozen)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n.startswith(('patch_embed.', 'levels.0.')))
    assert not model.levels[0].training and model.levels[1].training


def test_init_cfg_loads_the_ema_weights_of_a_classification_checkpoint(tmp_path):
    source = randomised_tiny('t_like').float()
    ema = {'module.' + k: v for k, v in source.state_dict().items()}
    ema['module.head.weight'] = torch.zeros(10, 128)  # the classifier head: dropped
    raw = {'module.' + k: torch.zeros_like(v) for k, v in source.state_dict().items()}
    path = tmp_path / 'flash_cls.pth'
    torch.save({'model': raw, 'model_ema': ema}, path)  # the original prefers model_ema over model
    model = build(**TINY, **TINY_CASES['t_like'], init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_init_weights_without_checkpoint_keeps_offset_mask_at_zero():
    model = build(**TINY, layer_scale=1.0)
    model.init_weights()
    offset_masks = [m.offset_mask for m in model.modules() if hasattr(m, 'offset_mask')]
    assert len(offset_masks) == sum(TINY['depths'])
    assert all(not lin.weight.any() and not lin.bias.any() for lin in offset_masks)
