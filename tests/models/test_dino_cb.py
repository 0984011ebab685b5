"""CB-DINO: composite-backbone detector, head and channel mapper on a small CB-InternImage (CPU)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from mmcv import Config
from mmdet.models import build_detector, build_neck

import mmdet_custom  # noqa: F401  (registers CBDINO & co.)
from mmdet_custom.models.dense_heads.cbdino_head import rename_cb_losses

SMALL_BACKBONE = dict(type='CBInternImage', core_op='DCNv3', channels=16, depths=[1, 1, 1, 1], groups=[1, 2, 4, 8],
                      drop_path_rate=0.0, out_indices=[(0, 1, 2, 3), (1, 2, 3)])


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: 2 OpenMP threads on the shared machine are much slower
    yield
    torch.set_num_threads(threads)


def tiny_cb_dino_cfg() -> dict:
    from tests.models.test_dino import tiny_dino_cfg  # the same tiny transformer / head
    cfg = tiny_dino_cfg(num_classes=4)
    cfg['type'] = 'CBDINO'
    cfg['backbone'] = copy.deepcopy(SMALL_BACKBONE)
    cfg['neck'] = [dict(cfg['neck'], type='CBChannelMapper')]
    cfg['bbox_head']['type'] = 'CBDINOHead'
    return cfg


def test_rename_cb_losses():
    losses = {'loss_cls': torch.tensor(2.0), 'd3.dn_loss_iou': torch.tensor(4.0), 'acc': torch.tensor(8.0)}
    assert {k: v.item() for k, v in rename_cb_losses(losses, 0, 0.5).items()} == {
        'loss_cls0_w0.5': 1.0, 'd3.dn_loss_iou0_w0.5': 2.0, 'acc0': 4.0}
    assert {k: v.item() for k, v in rename_cb_losses(losses, 1).items()} == {
        'loss_cls1': 2.0, 'd3.dn_loss_iou1': 4.0, 'acc1': 8.0}


def test_cb_channel_mapper_train_and_eval():
    neck = build_neck(dict(type='CBChannelMapper', in_channels=[4, 8], kernel_size=1, out_channels=8, act_cfg=None,
                           norm_cfg=dict(type='GN', num_groups=2), num_outs=3))
    first = (torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4))
    second = (torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4))
    neck.train()
    outs = neck((first, second))
    assert isinstance(outs, list) and len(outs) == 2 and [o.shape[-1] for o in outs[1]] == [8, 4, 2]
    neck.eval()
    with torch.no_grad():
        eval_outs = neck((first, second))
        # eval keeps only copy cb_idx = 1; same mapper as in training
        for a, b in zip(eval_outs, neck.__class__.__bases__[0].forward(neck, second)):
            assert torch.equal(a, b)


def test_cb_dino_train_step_and_test():
    model = build_detector(Config(dict(model=tiny_cb_dino_cfg())).model)
    model.init_weights()
    assert 'neck.0.convs.0.conv.weight' in model.state_dict()
    model.train()
    img = torch.randn(1, 3, 64, 64)
    metas = [dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=np.ones(4),
                  flip=False)]
    gt_bboxes, gt_labels = [torch.tensor([[4., 8., 40., 60.], [30., 2., 60., 30.]])], [torch.tensor([1, 3])]
    losses = model(return_loss=True, img=img, img_metas=copy.deepcopy(metas), gt_bboxes=gt_bboxes,
                   gt_labels=gt_labels)
    terms = ('loss_cls', 'loss_bbox', 'loss_iou')
    plain = {f'interm_{t}' for t in terms} | set(terms) | {f'd0.{t}' for t in terms}
    plain |= {f'dn_{t}' for t in terms} | {f'd0.dn_{t}' for t in terms}  # 2 decoder layers in the tiny model
    assert set(losses) == {f'{k}0_w0.5' for k in plain} | {f'{k}1' for k in plain}
    assert all(torch.isfinite(v) for v in losses.values())
    loss, _ = model._parse_losses(losses)
    loss.backward()
    params = dict(model.named_parameters())
    # (cb_linears get no gradient yet: the gammas that scale their output start at zero)
    for name in ('backbone.cb_modules.0.patch_embed.conv1.weight',
                 'backbone.cb_modules.0.levels.3.blocks.0.mlp.fc1.weight',
                 'backbone.cb_modules.1.levels.3.blocks.0.mlp.fc1.weight', 'backbone.cb_modules.1.gamma1'):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name

    model.eval()
    with torch.no_grad():
        results = model(return_loss=False, rescale=True, img=[img], img_metas=[metas])
    assert len(results) == 1 and len(results[0]) == 4 and sum(len(r) for r in results[0]) == 10  # max_per_img


def test_cb_dino_rule_freezes_by_name():
    model = build_detector(Config(dict(model=dict(tiny_cb_dino_cfg(), rule='freeze_cb_first_backbone'))).model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith('backbone.cb_modules.0.') for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith('backbone.cb_modules.1.'))
    with pytest.raises(ValueError, match='rule'):
        build_detector(Config(dict(model=dict(tiny_cb_dino_cfg(), rule='freeze_everything'))).model)
