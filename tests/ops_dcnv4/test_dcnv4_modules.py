"""The DCNv4 module: the original's parameters, its forward against a functional re-implementation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ops_dcnv4.functions import dcnv4_core_pytorch
from ops_dcnv4.modules import DCNv4


def test_state_dict_keys_and_shapes_match_the_original():
    module = DCNv4(64, group=4, dw_kernel_size=3, center_feature_scale=True, output_bias=False)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert shapes == {
        'offset_mask_dw.weight': (64, 1, 3, 3), 'offset_mask_dw.bias': (64,),
        'offset_mask.weight': (112, 64), 'offset_mask.bias': (112,),   # 4 * 9 * 3 = 108 -> 112
        'value_proj.weight': (64, 64), 'value_proj.bias': (64,), 'output_proj.weight': (64, 64),
        'center_feature_scale_proj_weight': (4, 64), 'center_feature_scale_proj_bias': (4,)}
    plain = DCNv4(160, group=10, remove_center=True, without_pointwise=True)
    assert {k: tuple(v.shape) for k, v in plain.state_dict().items()} == {
        'offset_mask.weight': (240, 160), 'offset_mask.bias': (240,)}   # 10 * 8 * 3 = 240


def test_initialisation_is_the_originals():
    module = DCNv4(32, group=2, output_bias=True)
    assert torch.all(module.offset_mask.weight == 0) and torch.all(module.offset_mask.bias == 0)
    assert torch.all(module.value_proj.bias == 0) and torch.all(module.output_proj.bias == 0)
    assert module.value_proj.weight.abs().sum() > 0


def functional_dcnv4(params, x, H, W, group, offset_scale, dw, cfs, remove_center):
    """The module's forward written out from docs/dcnv4_operator.md with explicit parameters."""
    N, L, C = x.shape
    value = F.linear(x, params['value_proj.weight'], params['value_proj.bias']).view(N, H, W, C)
    source = x
    if dw:
        source = F.conv2d(x.view(N, H, W, C).permute(0, 3, 1, 2), params['offset_mask_dw.weight'],
                          params['offset_mask_dw.bias'], padding=1, groups=C).permute(0, 2, 3, 1).reshape(N, L, C)
    offset_mask = F.linear(source, params['offset_mask.weight'], params['offset_mask.bias']).view(N, H, W, -1)
    out = dcnv4_core_pytorch(value, offset_mask, 3, 3, 1, 1, 1, 1, 1, 1, group, C // group, offset_scale,
                             remove_center)
    if cfs:
        gate = torch.sigmoid(F.linear(out, params['center_feature_scale_proj_weight'],
                                      params['center_feature_scale_proj_bias']))
        gate = gate.repeat_interleave(C // group, -1)
        out = out * (1 - gate) + value * gate
    return F.linear(out.reshape(N, L, C), params['output_proj.weight'], params.get('output_proj.bias'))


@pytest.mark.parametrize('dw, cfs, remove_center, H, W', [(False, False, False, 5, 5), (True, True, False, 4, 6),
                                                          (True, False, True, 3, 7)])
def test_forward_matches_a_functional_reimplementation(dw, cfs, remove_center, H, W):
    torch.manual_seed(1)
    module = DCNv4(24, group=3, offset_scale=0.5, dw_kernel_size=3 if dw else None, center_feature_scale=cfs,
                   remove_center=remove_center, output_bias=False).double()
    for parameter in module.parameters():  # the zero-initialised offsets/mask would hide most of the op
        torch.nn.init.normal_(parameter, std=0.5)
    x = torch.randn(2, H * W, 24, dtype=torch.float64)
    params = dict(module.state_dict())
    expected = functional_dcnv4(params, x, H, W, 3, 0.5, dw, cfs, remove_center)
    torch.testing.assert_close(module(x, (H, W)), expected)


def test_square_map_without_shape_and_bad_shapes():
    module = DCNv4(16, group=1)
    assert module(torch.randn(1, 36, 16)).shape == (1, 36, 16)
    with pytest.raises(ValueError, match='not a square map: pass shape'):
        module(torch.randn(1, 24, 16))
    with pytest.raises(ValueError, match=r'shape=\(4, 5\) has 20 pixels'):
        module(torch.randn(1, 24, 16), (4, 5))


def test_a_geometry_that_changes_the_map_size_is_refused():
    module = DCNv4(16, group=1, stride=2)
    with pytest.raises(ValueError, match='needs a same-size output'):
        module(torch.randn(1, 36, 16), (6, 6))


def test_channels_not_divisible_by_group():
    with pytest.raises(ValueError, match='channels must be divisible by group'):
        DCNv4(30, group=4)
