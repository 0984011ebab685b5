"""InternImage backbone: checkpoint keys/shapes per variant, loading, forward against an independent reference.

Expected key tables, sizes and hyper-parameters are written from the released checkpoints and configs
(docs/checkpoints.md, docs/model_zoo.md), not taken from the model under test.
"""
from __future__ import annotations

import logging
import warnings

import pytest
import torch
import torch.nn.functional as F

from mmdet_custom.models.backbones.intern_image import INTERN_IMAGE_VARIANTS, InternImage
from ops_dcnv3.functions import dcnv3_core_pytorch, extension_available

# The released detection configs (docs/checkpoints.md); XL's drop_path_rate is its 1x value.
RELEASED_VARIANTS = {
    'T': dict(channels=64, depths=[4, 4, 18, 4], groups=[4, 8, 16, 32], layer_scale=1.0, offset_scale=1.0,
              post_norm=False),
    'S': dict(channels=80, depths=[4, 4, 21, 4], groups=[5, 10, 20, 40], layer_scale=1.0, offset_scale=1.0,
              post_norm=True),
    'B': dict(channels=112, depths=[4, 4, 21, 4], groups=[7, 14, 28, 56], layer_scale=1.0, offset_scale=1.0,
              post_norm=True),
    'L': dict(channels=160, depths=[5, 5, 22, 5], groups=[10, 20, 40, 80], layer_scale=1.0, offset_scale=2.0,
              post_norm=True),
    'XL': dict(channels=192, depths=[5, 5, 24, 5], groups=[12, 24, 48, 96], layer_scale=1.0, offset_scale=2.0,
               post_norm=True),
    'H': dict(channels=320, depths=[6, 6, 32, 6], groups=[10, 20, 40, 80], layer_scale=None, offset_scale=1.0,
              post_norm=False, res_post_norm=True, dw_kernel_size=5, level2_post_norm=True,
              level2_post_norm_block_ids=[5, 11, 17, 23, 29], center_feature_scale=True),
    'G': dict(channels=512, depths=[2, 2, 48, 4], groups=[16, 32, 64, 128], layer_scale=None, offset_scale=1.0,
              post_norm=True, dw_kernel_size=5, level2_post_norm=True,
              level2_post_norm_block_ids=[5, 11, 17, 23, 29, 35, 41, 47], center_feature_scale=True),
}
RELEASED_DROP_PATH = {'T': 0.2, 'S': 0.3, 'B': 0.4, 'L': 0.4, 'XL': 0.4, 'H': 0.5, 'G': 0.5}
# The released checkpoints (docs/checkpoints.md): (parameter count, state_dict key count).
RELEASED_SIZES = {'T': (28_769_520, 685), 'S': (48_502_560, 743), 'B': (94_909_920, 743), 'L': (218_952_370, 831),
               'XL': (328_971_228, 875), 'H': (1_073_122_480, 1335), 'G': (3_052_781_184, 1273)}
BUILT_ON_META = {'B', 'L', 'XL', 'H', 'G'}  # only key names/shapes are needed; H and G are 1B+ parameters

SMALL = dict(channels=32, depths=[1, 1, 2, 1], groups=[2, 4, 8, 16], drop_path_rate=0.0)


def expected_state_dict_shapes(channels, depths, groups, mlp_ratio=4.0, layer_scale=None, post_norm=False,
                               res_post_norm=False, dw_kernel_size=None, level2_post_norm=False,
                               level2_post_norm_block_ids=None, center_feature_scale=False, **_unused):
    """The key -> shape table of the released checkpoints (LN norms, 3x3 DCN kernel: K = 9; docs/checkpoints.md)."""
    C, K, k_dw = channels, 9, dw_kernel_size or 3
    table = {}

    def norm(prefix, dim):
        table[prefix + '.weight'] = (dim,)
        table[prefix + '.bias'] = (dim,)

    def linear(prefix, out_dim, in_dim):
        table[prefix + '.weight'] = (out_dim, in_dim)
        table[prefix + '.bias'] = (out_dim,)

    table['patch_embed.conv1.weight'] = (C // 2, 3, 3, 3)
    table['patch_embed.conv1.bias'] = (C // 2,)
    norm('patch_embed.norm1.1', C // 2)
    table['patch_embed.conv2.weight'] = (C, C // 2, 3, 3)
    table['patch_embed.conv2.bias'] = (C,)
    norm('patch_embed.norm2.1', C)
    for i, depth in enumerate(depths):
        Ci, Gi, Hi = C * 2 ** i, groups[i], int(C * 2 ** i * mlp_ratio)
        for j in range(depth):
            p = f'levels.{i}.blocks.{j}.'
            if layer_scale is not None:
                table[p + 'gamma1'] = (Ci,)
                table[p + 'gamma2'] = (Ci,)
            norm(p + 'norm1.0', Ci)
            if center_feature_scale:
                table[p + 'dcn.center_feature_scale_proj_weight'] = (Gi, Ci)
                table[p + 'dcn.center_feature_scale_proj_bias'] = (Gi,)
            table[p + 'dcn.dw_conv.0.weight'] = (Ci, 1, k_dw, k_dw)
            table[p + 'dcn.dw_conv.0.bias'] = (Ci,)
            norm(p + 'dcn.dw_conv.1.1', Ci)
            linear(p + 'dcn.offset', Gi * K * 2, Ci)
            linear(p + 'dcn.mask', Gi * K, Ci)
            linear(p + 'dcn.input_proj', Ci, Ci)
            linear(p + 'dcn.output_proj', Ci, Ci)
            norm(p + 'norm2.0', Ci)
            linear(p + 'mlp.fc1', Hi, Ci)
            linear(p + 'mlp.fc2', Ci, Hi)
            if res_post_norm:
                norm(p + 'res_post_norm1.0', Ci)
                norm(p + 'res_post_norm2.0', Ci)
        if not post_norm or center_feature_scale:
            norm(f'levels.{i}.norm.0', Ci)
        if level2_post_norm and i == 2:
            for k in range(len(level2_post_norm_block_ids)):
                norm(f'levels.{i}.post_norms.{k}.0', Ci)
        if i < len(depths) - 1:
            table[f'levels.{i}.downsample.conv.weight'] = (2 * Ci, Ci, 3, 3)
            norm(f'levels.{i}.downsample.norm.1', 2 * Ci)
    return table


def build(variant_cfg: dict, **overrides) -> InternImage:
    return InternImage(**{**variant_cfg, **overrides})


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter a random value so no zero/one init can hide a wiring mistake."""
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
                # Offsets of a few pixels, so the bilinear sampling really leaves the regular grid.
                scale = 3.0 if '.dcn.offset.' in name else 1.0
                param.copy_(scale * noise / fan_in ** 0.5)


# ---------------------------------------------------------------------------------------------------------------
# Variant table, keys, shapes, sizes
# ---------------------------------------------------------------------------------------------------------------

def test_variant_table_matches_released_configs():
    assert set(INTERN_IMAGE_VARIANTS) == set(RELEASED_VARIANTS)
    for name, released in RELEASED_VARIANTS.items():
        variant = INTERN_IMAGE_VARIANTS[name]
        for key, value in released.items():
            assert variant.get(key) == value, (name, key)
        assert variant['drop_path_rate'] == RELEASED_DROP_PATH[name]
        for key in ('res_post_norm', 'level2_post_norm', 'center_feature_scale'):
            assert bool(variant.get(key, False)) == bool(released.get(key, False)), (name, key)
        # Released configs: 16 channels per group for T..XL, 32 for H/G, at every stage.
        group_channels = {RELEASED_VARIANTS[name]['channels'] * 2 ** i // g for i, g in enumerate(released['groups'])}
        assert group_channels == ({32} if name in ('H', 'G') else {16})


def test_from_variant_builds_the_table_entry_with_overrides():
    model = InternImage.from_variant('S', core_op='DCNv3_pytorch', out_indices=(2, 3), drop_path_rate=0.0)
    assert (model.channels, model.depths, model.post_norm, model.out_indices) == (80, [4, 4, 21, 4], True, (2, 3))
    assert [level.blocks[0].dcn.group for level in model.levels] == [5, 10, 20, 40]
    assert model.levels[0].blocks[0].dcn.offset_scale == 1.0 and model.levels[0].blocks[0].layer_scale
    with pytest.raises(ValueError, match="variant must be one of \\['T', 'S', 'B', 'L', 'XL', 'H', 'G'\\], got 'M'"):
        InternImage.from_variant('M')


@pytest.mark.parametrize('name', list(RELEASED_VARIANTS))
def test_state_dict_keys_shapes_and_size(name):
    if name in BUILT_ON_META:
        with torch.device('meta'):
            model = InternImage.from_variant(name)
    else:
        model = InternImage.from_variant(name)
    state = model.state_dict()
    got = {k: tuple(v.shape) for k, v in state.items()}
    expected = expected_state_dict_shapes(**RELEASED_VARIANTS[name])
    assert sorted(set(got) - set(expected)) == []
    assert sorted(set(expected) - set(got)) == []
    assert got == expected
    params, keys = RELEASED_SIZES[name]
    assert len(state) == keys
    assert sum(v.numel() for v in state.values()) == params
    assert sum(p.numel() for p in model.parameters()) == params  # no buffers with LN


def test_meta_construction_allocates_nothing():
    with torch.device('meta'):
        model = InternImage.from_variant('G')
    assert all(p.device.type == 'meta' for p in model.parameters())


def test_construction_init_matches_upstream():
    model = build(SMALL, layer_scale=0.25, center_feature_scale=True)
    for block in (b for level in model.levels for b in level.blocks):
        for lin in (block.dcn.offset, block.dcn.mask):
            assert torch.count_nonzero(lin.weight) == 0 and torch.count_nonzero(lin.bias) == 0
        assert torch.count_nonzero(block.dcn.input_proj.bias) == 0
        assert torch.count_nonzero(block.dcn.input_proj.weight) > 0
        assert torch.count_nonzero(block.dcn.center_feature_scale_proj_weight) == 0
        assert torch.equal(block.gamma1, torch.full_like(block.gamma1, 0.25))
        assert float(block.mlp.fc1.weight.std()) == pytest.approx(0.02, rel=0.2)
        assert torch.equal(block.norm1[0].weight, torch.ones_like(block.norm1[0].weight))
    # init_weights without init_cfg keeps the DCN offset/mask projections at zero (documented deviation).
    model.init_weights()
    assert torch.count_nonzero(model.levels[0].blocks[0].dcn.offset.weight) == 0


def test_drop_path_rates_match_torch_linspace():
    model = build(SMALL, drop_path_rate=0.3)
    got = [0.0 if isinstance(b.drop_path, torch.nn.Identity) else b.drop_path.drop_prob
           for level in model.levels for b in level.blocks]
    expected = torch.linspace(0, 0.3, sum(SMALL['depths'])).tolist()
    assert got == pytest.approx(expected, abs=1e-6)
    uniform = build(SMALL, drop_path_rate=0.3, drop_path_type='uniform')
    assert {b.drop_path.drop_prob for level in uniform.levels for b in level.blocks} == {0.3}


def test_registry_builds_the_backbone():
    from mmdet.models import build_backbone
    model = build_backbone(dict(type='InternImage', **SMALL))
    assert isinstance(model, InternImage)


# ---------------------------------------------------------------------------------------------------------------
# Independent functional reference (docs/checkpoints.md), fed the model's state dict
# ---------------------------------------------------------------------------------------------------------------

def _ln(x, sd, prefix):
    return F.layer_norm(x, (x.shape[-1],), sd[prefix + '.weight'], sd[prefix + '.bias'], eps=1e-6)


def _lin(x, sd, prefix):
    return F.linear(x, sd[prefix + '.weight'], sd[prefix + '.bias'])


def _ref_dcn(x, sd, p, channels, group, offset_scale, k_dw, center_feature_scale):
    N, H, W, _ = x.shape
    x_proj = _lin(x, sd, p + 'input_proj')
    x1 = F.conv2d(x.permute(0, 3, 1, 2), sd[p + 'dw_conv.0.weight'], sd[p + 'dw_conv.0.bias'],
                  padding=(k_dw - 1) // 2, groups=channels)
    x1 = F.gelu(_ln(x1.permute(0, 2, 3, 1), sd, p + 'dw_conv.1.1'))
    offset = _lin(x1, sd, p + 'offset')
    mask = _lin(x1, sd, p + 'mask').reshape(N, H, W, group, 9).softmax(-1).reshape(N, H, W, group * 9)
    y = dcnv3_core_pytorch(x_proj, offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, group, channels // group, offset_scale)
    if center_feature_scale:
        s = torch.sigmoid(F.linear(x1, sd[p + 'center_feature_scale_proj_weight'],
                                   sd[p + 'center_feature_scale_proj_bias']))
        s = s.repeat_interleave(channels // group, dim=-1)
        y = y * (1 - s) + x_proj * s
    return _lin(y, sd, p + 'output_proj')


def reference_forward(sd, img, channels, depths, groups, layer_scale=None, offset_scale=1.0, post_norm=False,
                      res_post_norm=False, dw_kernel_size=None, level2_post_norm=False,
                      level2_post_norm_block_ids=None, center_feature_scale=False, out_indices=(0, 1, 2, 3),
                      **_unused):
    x = F.conv2d(img, sd['patch_embed.conv1.weight'], sd['patch_embed.conv1.bias'], stride=2, padding=1)
    x = F.gelu(_ln(x.permute(0, 2, 3, 1), sd, 'patch_embed.norm1.1')).permute(0, 3, 1, 2)
    x = F.conv2d(x, sd['patch_embed.conv2.weight'], sd['patch_embed.conv2.bias'], stride=2, padding=1)
    x = _ln(x.permute(0, 2, 3, 1), sd, 'patch_embed.norm2.1')
    outs = []
    for i, depth in enumerate(depths):
        Ci = channels * 2 ** i
        for j in range(depth):
            p = f'levels.{i}.blocks.{j}.'

            def dcn(t, p=p, Ci=Ci, i=i):
                return _ref_dcn(t, sd, p + 'dcn.', Ci, groups[i], offset_scale, dw_kernel_size or 3,
                                center_feature_scale)

            def mlp(t, p=p):
                return _lin(F.gelu(_lin(t, sd, p + 'mlp.fc1')), sd, p + 'mlp.fc2')

            g1 = sd[p + 'gamma1'] if layer_scale is not None else 1
            g2 = sd[p + 'gamma2'] if layer_scale is not None else 1
            if post_norm:
                x = x + g1 * _ln(dcn(x), sd, p + 'norm1.0')
                x = x + g2 * _ln(mlp(x), sd, p + 'norm2.0')
            elif res_post_norm and layer_scale is None:
                x = x + _ln(dcn(_ln(x, sd, p + 'norm1.0')), sd, p + 'res_post_norm1.0')
                x = x + _ln(mlp(_ln(x, sd, p + 'norm2.0')), sd, p + 'res_post_norm2.0')
            else:
                x = x + g1 * dcn(_ln(x, sd, p + 'norm1.0'))
                x = x + g2 * mlp(_ln(x, sd, p + 'norm2.0'))
            if level2_post_norm and i == 2 and j in level2_post_norm_block_ids:
                x = _ln(x, sd, f'levels.{i}.post_norms.{level2_post_norm_block_ids.index(j)}.0')
        if not post_norm or center_feature_scale:
            x = _ln(x, sd, f'levels.{i}.norm.0')
        if i in out_indices:
            outs.append(x.permute(0, 3, 1, 2))
        if i < len(depths) - 1:
            x = F.conv2d(x.permute(0, 3, 1, 2), sd[f'levels.{i}.downsample.conv.weight'], stride=2, padding=1)
            x = _ln(x.permute(0, 2, 3, 1), sd, f'levels.{i}.downsample.norm.1')
    return outs


# Small models covering every residual variant of the released sizes and the H/G extras.
BLOCK_VARIANTS = {
    'T-like': dict(layer_scale=1.0),
    'S-like': dict(layer_scale=1.0, post_norm=True, offset_scale=2.0),
    'H-like': dict(res_post_norm=True, dw_kernel_size=5, level2_post_norm=True, level2_post_norm_block_ids=[1],
                   center_feature_scale=True),
    'G-like': dict(post_norm=True, dw_kernel_size=5, level2_post_norm=True, level2_post_norm_block_ids=[0, 1],
                   center_feature_scale=True),
    'plain': dict(out_indices=(1, 2, 3)),
}


def require_compiled_core(core_op: str) -> None:
    """core_op='DCNv3' without the extension would run the PyTorch core: a test would compare it with itself."""
    if core_op == 'DCNv3' and not extension_available():
        pytest.skip("ops_dcnv3._C is not built: core_op='DCNv3' would run the PyTorch core")


@pytest.mark.parametrize('core_op', ['DCNv3_pytorch', 'DCNv3'])
@pytest.mark.parametrize('variant', list(BLOCK_VARIANTS))
def test_forward_matches_functional_reference(variant, core_op, compiled_core_calls):
    """The backbone (with the compiled or the PyTorch core) against a functional re-implementation."""
    require_compiled_core(core_op)
    cfg = {**SMALL, **BLOCK_VARIANTS[variant]}
    model = build(cfg, core_op=core_op).eval()
    randomize_(model, seed=1)
    img = torch.randn(2, 3, 61, 90, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        outs = model(img)
        expected = reference_forward(model.state_dict(), img, **cfg)
    assert isinstance(outs, list) and len(outs) == len(expected) == len(cfg.get('out_indices', range(4)))
    for got, want in zip(outs, expected):
        assert got.is_contiguous() and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert bool(compiled_core_calls) == (core_op == 'DCNv3'), 'the compiled core ran exactly when asked for'


def test_output_shapes_and_strides():
    model = build(SMALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 16, 24), (1, 64, 8, 12), (1, 128, 4, 6), (1, 256, 2, 3)]
    with torch.no_grad():  # odd sizes: each stride-2 conv rounds up
        outs = model(torch.randn(1, 3, 65, 97))
    assert [tuple(o.shape[-2:]) for o in outs] == [(17, 25), (9, 13), (5, 7), (3, 4)]


# ---------------------------------------------------------------------------------------------------------------
# Cores, checkpointing, backward
# ---------------------------------------------------------------------------------------------------------------

def _forward_backward(model, img):
    outs = model(img)
    loss = sum((o * torch.linspace(-1, 1, o.numel()).reshape(o.shape)).sum() for o in outs)
    loss.backward()
    return [o.detach() for o in outs], {n: p.grad.clone() for n, p in model.named_parameters()}, img.grad.clone()


def test_compiled_and_pytorch_cores_agree_forward_and_backward(compiled_core_calls):
    """Same weights, core_op='DCNv3' (compiled CPU kernel) vs 'DCNv3_pytorch': outputs and all gradients."""
    require_compiled_core('DCNv3')
    cfg = {**SMALL, **BLOCK_VARIANTS['H-like']}
    compiled = build(cfg, core_op='DCNv3')
    randomize_(compiled, seed=3)
    pure = build(cfg, core_op='DCNv3_pytorch')
    pure.load_state_dict(compiled.state_dict())
    img = torch.randn(1, 3, 64, 80, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for a, b in zip(compiled.eval()(img), pure.eval()(img)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    compiled.train(), pure.train()
    outs_a, grads_a, gimg_a = _forward_backward(compiled, img.clone().requires_grad_())
    outs_b, grads_b, gimg_b = _forward_backward(pure, img.clone().requires_grad_())
    for name in grads_b:
        scale = float(grads_b[name].abs().max()) + 1e-12
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-3, atol=1e-3 * scale, msg=name)
    torch.testing.assert_close(gimg_a, gimg_b, rtol=1e-3, atol=1e-3 * float(gimg_b.abs().max()))
    assert compiled_core_calls and set(compiled_core_calls) == {'cpu'}, 'the compiled kernel ran'


@pytest.mark.parametrize('core_op', ['DCNv3', 'DCNv3_pytorch'])
def test_with_cp_gives_same_outputs_and_gradients(core_op, compiled_core_calls):
    """with_cp=True vs False with the same weights and core: outputs and gradients."""
    require_compiled_core(core_op)
    cfg = {**SMALL, **BLOCK_VARIANTS['T-like'], 'drop_path_rate': 0.0}
    plain = build(cfg, core_op=core_op)
    randomize_(plain, seed=5)
    cp = build(cfg, core_op=core_op, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    img = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(6))
    outs_a, grads_a, gimg_a = _forward_backward(plain.train(), img.clone().requires_grad_())
    outs_b, grads_b, gimg_b = _forward_backward(cp.train(), img.clone().requires_grad_())
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert set(grads_a) == set(grads_b)
    for name in grads_a:
        assert torch.count_nonzero(grads_a[name]) > 0 or 'offset' in name or 'mask' in name, name
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(gimg_a, gimg_b, rtol=1e-5, atol=1e-6)
    assert bool(compiled_core_calls) == (core_op == 'DCNv3'), 'the compiled core ran exactly when asked for'


def test_with_cp_checkpoints_the_blocks():
    model = build(SMALL, with_cp=True).train()
    calls = []
    import torch.utils.checkpoint as cp_module
    original = cp_module.checkpoint

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    cp_module.checkpoint = spy
    try:
        model(torch.randn(1, 3, 32, 32))
        with torch.no_grad():
            model(torch.randn(1, 3, 32, 32))
    finally:
        cp_module.checkpoint = original
    assert len(calls) == sum(SMALL['depths'])  # once per block, and not under no_grad


# ---------------------------------------------------------------------------------------------------------------
# train(), freezing
# ---------------------------------------------------------------------------------------------------------------

def test_train_and_eval_return_self():
    model = build(SMALL)
    assert model.train() is model
    assert model.eval() is model
    assert not model.training


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2])
def test_frozen_stages_freeze_stem_and_first_stages(frozen_stages):
    model = build(SMALL, frozen_stages=frozen_stages).train()
    parts = [('patch_embed', model.patch_embed)] + [(f'levels.{i}', level) for i, level in enumerate(model.levels)]
    frozen = set() if frozen_stages < 0 else {'patch_embed'} | {f'levels.{i}' for i in range(frozen_stages)}
    for name, part in parts:
        modes = {m.training for m in part.modules()}
        grads = {p.requires_grad for p in part.parameters()}
        if name in frozen:
            assert modes == {False} and grads == {False}, name
        else:
            assert modes == {True} and grads == {True}, name


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint loading through init_cfg
# ---------------------------------------------------------------------------------------------------------------

class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def mmdet_log():
    from mmdet.utils import get_root_logger
    logger = get_root_logger()
    handler = _Records()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _classification_checkpoint(state_dict: dict, wrapper: str = 'model', prefix: str = '') -> dict:
    sd = {prefix + k: v.clone() for k, v in state_dict.items()}
    # The classification heads of T..XL and of H/G (docs/checkpoints.md).
    sd['conv_head.0.weight'] = torch.randn(8, 256, 1, 1)
    sd['head.weight'] = torch.randn(10, 8)
    sd['head.bias'] = torch.randn(10)
    sd['clip_projector.q.weight'] = torch.randn(4, 4)
    sd['fc_norm.weight'] = torch.randn(4)
    sd['dcnv3_head_x4.0.weight'] = torch.randn(4)
    return {wrapper: sd, 'epoch': 3} if wrapper else sd


@pytest.mark.parametrize('wrapper, prefix', [('model', ''), ('state_dict', 'backbone.'), ('model', 'module.'),
                                             (None, '')])
def test_checkpoint_round_trip(tmp_path, mmdet_log, wrapper, prefix):
    source = build(SMALL, layer_scale=1.0)
    randomize_(source, seed=7)
    path = tmp_path / 'internimage_small.pth'
    torch.save(_classification_checkpoint(source.state_dict(), wrapper, prefix), path)
    target = build(SMALL, layer_scale=1.0, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    target.init_weights()
    expected = source.state_dict()
    loaded = target.state_dict()
    assert set(loaded) == set(expected)
    for key in expected:
        assert torch.equal(loaded[key], expected[key]), key
    report = '\n'.join(mmdet_log.messages)
    assert 'missing keys' not in report and 'unexpected keys' not in report, report


def test_checkpoint_with_misnamed_key_is_reported(tmp_path, mmdet_log):
    source = build(SMALL)
    state = _classification_checkpoint(source.state_dict())
    state['model']['levels.1.blocks.0.dcn.ofset.weight'] = state['model'].pop('levels.1.blocks.0.dcn.offset.weight')
    path = tmp_path / 'misnamed.pth'
    torch.save(state, path)
    target = build(SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    target.init_weights()
    report = '\n'.join(mmdet_log.messages)
    missing_line = next(m for m in mmdet_log.messages if 'missing keys' in m)
    unexpected_line = next(m for m in mmdet_log.messages if 'unexpected keys' in m)
    assert 'levels.1.blocks.0.dcn.offset.weight' in missing_line, report
    assert 'levels.1.blocks.0.dcn.ofset.weight' in unexpected_line, report
    assert 'head.weight' not in report and 'conv_head' not in report  # classifier heads are dropped silently


def test_layer_scale_free_checkpoint_reports_gammas_missing(tmp_path, mmdet_log):
    # docs/checkpoints.md: the classification T checkpoint has no gammas; the detection T config (layer_scale=1.0)
    # keeps 1.0.
    source = build(SMALL)
    path = tmp_path / 'no_gamma.pth'
    torch.save({'model': source.state_dict()}, path)
    target = build(SMALL, layer_scale=1.0, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    target.init_weights()
    missing_line = next(m for m in mmdet_log.messages if 'missing keys' in m)
    assert 'levels.0.blocks.0.gamma1' in missing_line
    assert torch.equal(target.levels[0].blocks[0].gamma1, torch.ones(32))


# ---------------------------------------------------------------------------------------------------------------
# Argument checking
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('overrides, exc, name', [
    (dict(groups=[3, 4, 8, 16]), ValueError, 'groups'),
    (dict(groups=[2, 4, 8]), ValueError, 'groups'),
    (dict(core_op='DCNv2'), ValueError, 'core_op'),
    (dict(norm_layer='GN'), ValueError, 'norm_layer'),
    (dict(act_layer='Tanh'), ValueError, 'act_layer'),
    (dict(out_indices=(0, 4)), ValueError, 'out_indices'),
    (dict(out_indices=(-1,)), ValueError, 'out_indices'),
    (dict(drop_path_type='cosine'), ValueError, 'drop_path_type'),
    (dict(frozen_stages=5), ValueError, 'frozen_stages'),
    (dict(channels=33), ValueError, 'channels'),
    (dict(level2_post_norm=True, level2_post_norm_block_ids=[2]), ValueError, 'level2_post_norm_block_ids'),
    (dict(init_cfg=dict(type='Pretrained')), ValueError, 'init_cfg'),
    (dict(offest_scale=2.0), TypeError, 'offest_scale'),
])
def test_bad_configuration_names_the_argument(overrides, exc, name):
    with pytest.raises(exc, match=name):
        build(SMALL, **overrides)


def test_classification_only_arguments_warn():
    with pytest.warns(UserWarning, match='use_clip_projector'):
        build(SMALL, use_clip_projector=True, remove_center=False)


def test_small_variants_construct():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # non-power-of-2 group width warning from DCNv3
        for channels, groups in ((16, [1, 2, 4, 8]), (32, [4, 4, 4, 4]), (48, [3, 6, 12, 24])):
            model = InternImage(channels=channels, depths=[1, 1, 1, 1], groups=groups).eval()
            with torch.no_grad():
                outs = model(torch.randn(1, 3, 32, 32))
            assert [o.shape[1] for o in outs] == [channels * 2 ** i for i in range(4)]


def test_grad_and_no_grad_forwards_agree():
    # Inference takes an in-place GELU in the MLP; with autograd on, nn.GELU runs. Both must agree.
    model = build(SMALL, layer_scale=1.0).eval()
    randomize_(model, seed=8)
    img = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(9))
    with_grad = model(img)
    with torch.no_grad():
        without = model(img)
    for a, b in zip(with_grad, without):
        torch.testing.assert_close(a.detach(), b, rtol=1e-6, atol=1e-6)


def test_drop_path_active_in_training_only():
    model = build(SMALL, layer_scale=1.0, drop_path_rate=0.9)
    randomize_(model, seed=10)
    img = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        eval_out = model.eval()(img)
        torch.manual_seed(0)
        train_out = model.train()(img)
    assert not torch.allclose(eval_out[-1], train_out[-1])
