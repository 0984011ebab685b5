"""The demo configs: the shipped pre-trained backbone loads through init_cfg, the scratch variant differs only there,
and SyncBN heads (as in the Cascade configs) are converted to BN in a single-process run."""
from __future__ import annotations

import torch
from mmcv import Config
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401  (registers InternImage)

PRETRAINED = 'checkpoints/demo/internimage_demo_shapes_pretrain.pth'


def test_shipped_backbone_loads_with_every_key(helpers, monkeypatch):
    monkeypatch.chdir(helpers.repo)
    cfg = Config.fromfile('configs/demo/mask_rcnn_internimage_demo_shapes.py')
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=PRETRAINED)
    model = build_detector(cfg.model)
    model.init_weights()
    shipped = torch.load(PRETRAINED, map_location='cpu', weights_only=False)['state_dict']
    backbone_state = model.backbone.state_dict()
    assert set(shipped) == set(backbone_state)  # no missing, no unexpected keys
    for key, value in shipped.items():
        assert torch.equal(backbone_state[key], value.to(backbone_state[key].dtype)), key


def test_scratch_variant_only_drops_the_pretrained_weights(helpers):
    demo = Config.fromfile(str(helpers.repo / 'configs/demo/mask_rcnn_internimage_demo_shapes.py'))
    scratch = Config.fromfile(str(helpers.repo / 'configs/demo/mask_rcnn_internimage_demo_shapes_scratch.py'))
    assert scratch.model.backbone.init_cfg is None
    scratch.model.backbone.init_cfg = demo.model.backbone.init_cfg
    assert scratch.pretty_text == demo.pretty_text


def test_single_process_training_converts_syncbn_heads(helpers, shapes_data, tmp_path):
    config = tmp_path / 'syncbn_heads.py'
    config.write_text(
        f"_base_ = ['{helpers.repo / helpers.demo_config}']\n"
        "sync_bn = dict(_delete_=True, type='SyncBN', requires_grad=True)\n"
        "model = dict(roi_head=dict(bbox_head=dict(norm_cfg=sync_bn), mask_head=dict(norm_cfg=sync_bn)))\n")
    options = helpers.tiny_cfg_options(shapes_data, max_iters=1, checkpoint_interval=1)
    result = helpers.run_script(['train.py', str(config), '--work-dir', str(tmp_path / 'work'), '--no-validate',
                                 '--cfg-options', *options])
    assert 'converted 4 SyncBatchNorm layers to BatchNorm' in result.stderr
    state = torch.load(tmp_path / 'work' / 'latest.pth', weights_only=False)['state_dict']
    assert 'roi_head.bbox_head.shared_convs.0.bn.running_mean' in state  # a BN now


def test_dino_demo_config_trains_and_tests(helpers, shapes_data, tmp_path):
    config = 'configs/demo/dino_internimage_demo_shapes.py'
    options = [option for option in helpers.tiny_cfg_options(shapes_data, max_iters=2)
               if not option.startswith(('model.backbone.depths', 'model.test_cfg'))]
    # 64-px images have 85 encoder tokens: fewer two-stage proposals than that
    options += ['model.bbox_head.num_query=50', 'model.bbox_head.transformer.two_stage_num_proposals=50']
    helpers.run_script(['train.py', config, '--work-dir', str(tmp_path), '--no-validate', '--cfg-options', *options])
    losses = helpers.read_train_log(tmp_path)[-1]
    for key in ('loss_cls', 'loss_bbox', 'loss_iou', 'interm_loss_cls', 'dn_loss_cls'):
        assert key in losses and losses[key] == losses[key], key  # present and not NaN
    result = helpers.run_script(['test.py', config, str(tmp_path / 'latest.pth'), '--eval', 'bbox',
                                 '--cfg-options', *options])
    assert "'bbox_mAP'" in result.stdout
