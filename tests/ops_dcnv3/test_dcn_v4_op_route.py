"""``use_dcn_v4_op=True`` (ops_dcnv4.DCNv3OnDCNv4): DCNv3 runs its sampling through the DCNv4 operator (packed
offsets + softmaxed mask) and gives the DCNv3 path's outputs and gradients, for the module and for the InternImage
backbone of the ``..._with_dcnv4`` config; the DCNv4 operator is really called (counted), so equality cannot come
from a silent fallback to the DCNv3 core."""
from __future__ import annotations

import warnings

import pytest
import torch

import ops_dcnv4.functions as dcnv4_functions
from ops_dcnv3.modules import DCNv3, DCNv3_pytorch
from ops_dcnv4.modules import DCNv3OnDCNv4


@pytest.fixture
def dcnv4_calls(monkeypatch):
    calls = []
    original = dcnv4_functions.DCNv4Function.apply

    def counting_apply(*args):
        calls.append(args[1].shape)
        return original(*args)

    monkeypatch.setattr(dcnv4_functions.DCNv4Function, 'apply', counting_apply)
    return calls


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    return module


@pytest.mark.parametrize('group, channels, dw_kernel_size, center_feature_scale', [
    (4, 64, None, False), (3, 48, 5, True), (2, 16, 3, False)])
def test_module_outputs_and_gradients_match(dcnv4_calls, group, channels, dw_kernel_size, center_feature_scale):
    kwargs = dict(channels=channels, group=group, offset_scale=1.5, dw_kernel_size=dw_kernel_size,
                  center_feature_scale=center_feature_scale)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        reference = randomised(DCNv3(**kwargs)).double()
        routed = DCNv3OnDCNv4(**kwargs).double()
    routed.load_state_dict(reference.state_dict())
    x = torch.randn(2, 7, 9, channels, dtype=torch.float64, requires_grad=True)
    x_routed = x.detach().clone().requires_grad_()
    out, out_routed = reference(x), routed(x_routed)
    assert len(dcnv4_calls) == 1  # K = 9 points x 3 x group, rounded up to a multiple of 8
    assert dcnv4_calls[0][-1] == (group * 27 + 7) // 8 * 8
    torch.testing.assert_close(out_routed, out)
    out.square().sum().backward()
    out_routed.square().sum().backward()
    torch.testing.assert_close(x_routed.grad, x.grad)
    for (name, p), p_routed in zip(reference.named_parameters(), routed.parameters()):
        torch.testing.assert_close(p_routed.grad, p.grad, msg=name)


def test_pytorch_module_does_not_route(dcnv4_calls):
    with pytest.warns(UserWarning, match='DCNv3_pytorch always runs the pure-PyTorch DCNv3 core'):
        module = DCNv3_pytorch(channels=16, group=2, use_dcn_v4_op=True)
    module(torch.randn(1, 4, 4, 16))
    assert dcnv4_calls == []


def test_dcnv3_refuses_the_switch_it_no_longer_carries():
    with pytest.raises(ValueError, match='DCNv3OnDCNv4'):
        DCNv3(channels=16, group=2, use_dcn_v4_op=True)


def test_with_dcnv4_config_backbone_matches_dcnv3(dcnv4_calls):
    from pathlib import Path

    pytest.importorskip('mmdet', reason='building the config backbone needs mmcv/mmdet (a bare GPU machine has none)')
    from mmcv import Config
    from mmdet.models import build_backbone

    import mmdet_custom  # noqa: F401
    repo = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(repo / 'configs/coco/mask_rcnn_internimage_t_fpn_1x_coco_with_dcnv4.py'))
    backbone_cfg = cfg.model.backbone
    assert backbone_cfg.use_dcn_v4_op is True and backbone_cfg.core_op == 'DCNv3'
    # the config's backbone with fewer blocks (same widths, groups and block type) to stay fast
    backbone_cfg.update(init_cfg=None, depths=[1, 1, 2, 1], drop_path_rate=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        routed = randomised(build_backbone(backbone_cfg)).eval()
        reference = build_backbone({**backbone_cfg, 'use_dcn_v4_op': False}).eval()
    reference.load_state_dict(routed.state_dict())
    img = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        outs, outs_ref = routed(img), reference(img)
    assert len(dcnv4_calls) == 5  # one per block
    assert type(routed.levels[0].blocks[0].dcn) is DCNv3OnDCNv4
    for out, ref in zip(outs, outs_ref, strict=True):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
