"""DINO detector, head and transformer: a real InternImage-T DINO training / test step on synthetic COCO data,
the denoising targets, the sine embedding, and a tiny DINO that overfits one image (matching and losses work)."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.parallel import collate
from mmdet.core import bbox_overlaps
from mmdet.datasets import build_dataset
from mmdet.models import build_detector, build_head

import mmdet_custom  # noqa: F401  (registers DINO & co.)
from mmdet_custom.models.utils.transformer import coordinate_to_encoding
from tests.helpers import make_coco_dataset

REPO = Path(__file__).resolve().parents[2]
T_CONFIG = REPO / 'configs/coco/dino_4scale_internimage_t_1x_coco_layer_wise_lr.py'
IMG_NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
LOSS_TERMS = ('loss_cls', 'loss_bbox', 'loss_iou')
NUM_QUERY = 900


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on the shared 2-core machine, 2 OpenMP threads spin against other jobs and run these
    small ops 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def expected_loss_keys(num_decoder_layers: int = 6) -> set[str]:
    keys = {f'interm_{t}' for t in LOSS_TERMS}
    for prefix in ('', 'dn_'):
        keys |= {f'{prefix}{t}' for t in LOSS_TERMS}
        keys |= {f'd{i}.{prefix}{t}' for i in range(num_decoder_layers - 1) for t in LOSS_TERMS}
    return keys


def synthetic_batch(tmp_path: Path, image_size=(200, 224), num_images=2, objects=3) -> dict:
    """A collated COCO-format batch from files on disk, through mmdet's own dataset and pipeline."""
    data = make_coco_dataset(str(tmp_path), num_images=num_images, image_size=image_size, objects_per_image=objects)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', img_scale=(224, 224), keep_ratio=True),
        dict(type='RandomFlip', flip_ratio=0.0),
        dict(type='Normalize', **IMG_NORM),
        dict(type='Pad', size_divisor=32),
        dict(type='DefaultFormatBundle'),
        dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
    ]
    dataset = build_dataset(dict(type='CocoDataset', ann_file=data['ann_file'], img_prefix=data['img_prefix'],
                                 classes=data['classes'], pipeline=pipeline))
    batch = collate([dataset[i] for i in range(num_images)], samples_per_gpu=num_images)
    return dict(img=batch['img'].data[0], img_metas=batch['img_metas'].data[0],
                gt_bboxes=batch['gt_bboxes'].data[0], gt_labels=batch['gt_labels'].data[0])


@pytest.fixture(scope='module')
def dino_t():
    """The DINO-T config's model with random weights and without activation checkpointing (a memory saver only).
    224 px is the smallest input with >= 900 encoder tokens (28^2 + 14^2 + 7^2 + 4^2) for the 900 proposals."""
    cfg = Config.fromfile(str(T_CONFIG))
    cfg.model.backbone.init_cfg = None  # random weights, no download
    cfg.model.backbone.with_cp = False
    assert cfg.model.bbox_head.num_query == NUM_QUERY
    torch.manual_seed(0)  # the same weights whichever tests ran before
    return build_detector(cfg.model)


def test_parameters_are_drawn_at_construction():
    """A model built without init_weights (as here, and as a user loading a checkpoint into it would) has no
    uninitialised parameter: DinoTransformer.level_embeds was a bare torch.Tensor that held whatever memory it got,
    NaN at times, which made the DINO-T step fail depending on the tests that ran before it."""
    transformer = build_head(tiny_dino_cfg()['bbox_head']).transformer
    level_embeds = transformer.level_embeds.detach()
    assert level_embeds.numel() >= 256
    # N(0, 1) as the parent's init_weights draws it; leftover memory is zeros or arbitrary values
    assert abs(level_embeds.mean().item()) < 0.2 and 0.8 < level_embeds.std().item() < 1.2
    for name, value in transformer.named_parameters():
        assert torch.isfinite(value).all(), name


# parameters that must get a gradient in the first step (level_embeds is not among them: MSDA's offset / weight
# projections start at zero, so its first gradient is 0)
HEAD_GRADIENTS = ('backbone.patch_embed.conv1.weight', 'neck.convs.0.conv.weight', 'bbox_head.label_embedding.weight',
                  'bbox_head.transformer.query_embed.weight',
                  'bbox_head.transformer.encoder.layers.0.attentions.0.sampling_offsets.weight')


def test_dino_t_train_step_and_test(dino_t, tmp_path):
    dino_train_step_and_test(dino_t, tmp_path, ('backbone.levels.0.blocks.0.dcn.offset.weight',), max_per_img=100)


def dino_train_step_and_test(model, tmp_path: Path, backbone_gradients: tuple[str, ...], max_per_img: int) -> None:
    """One training step (losses, shapes, gradients) and one test forward of a DINO-T-sized detector."""
    model = model.train()
    batch = synthetic_batch(tmp_path)
    assert tuple(batch['img'].shape[-2:]) == (224, 224)  # 200 px padded to 224: the padding masks are exercised
    head_outputs = []
    handle = model.bbox_head.register_forward_hook(lambda m, args, out: head_outputs.append(out))
    losses = model(return_loss=True, **batch)
    handle.remove()

    assert set(losses) == expected_loss_keys()
    for name, value in losses.items():
        assert torch.isfinite(value).all(), name
    assert all(losses[k] > 0 for k in ('loss_cls', 'loss_bbox', 'loss_iou', 'dn_loss_cls', 'interm_loss_cls'))
    all_cls, all_boxes, topk_score, topk_anchor = head_outputs[0]
    max_gt = max(len(b) for b in batch['gt_bboxes'])
    pad_size = 2 * max_gt * (100 // max_gt)  # num_dn_queries 100 -> 100 // m groups of 2m queries
    assert all_cls.shape == (6, 2, pad_size + NUM_QUERY, 80) and all_boxes.shape == (6, 2, pad_size + NUM_QUERY, 4)
    assert topk_score.shape == (2, NUM_QUERY, 80) and topk_anchor.shape == (2, NUM_QUERY, 4)

    loss, _ = model._parse_losses(losses)
    model.zero_grad()
    loss.backward()
    for name in HEAD_GRADIENTS + backbone_gradients:
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name

    # eval: no denoising queries, only the matching queries, mmdet's per-class result format
    model.eval()
    assert model.bbox_head.dn_generator(batch['gt_bboxes'], batch['gt_labels'], model.bbox_head.label_embedding,
                                        batch['img_metas']) == (None, None, None, None)
    head_outputs.clear()
    head_forward = model.bbox_head.forward  # DETRHead.simple_test_bboxes calls .forward directly (no hooks)
    model.bbox_head.forward = lambda *args: head_outputs.append(head_forward(*args)) or head_outputs[-1]
    try:
        with torch.no_grad():
            results = model(return_loss=False, rescale=True, img=[batch['img']], img_metas=[batch['img_metas']])
    finally:
        del model.bbox_head.forward
    assert head_outputs[0][0].shape == (6, 2, NUM_QUERY, 80)
    assert len(results) == 2
    for result, meta in zip(results, batch['img_metas']):
        assert isinstance(result, list) and len(result) == 80
        assert all(isinstance(r, np.ndarray) and r.ndim == 2 and r.shape[1] == 5 for r in result)
        detections = np.concatenate(result)
        assert len(detections) == max_per_img  # test_cfg.max_per_img
        h, w = meta['ori_shape'][:2]
        assert (detections[:, [0, 2]] <= w + 1e-3).all() and (detections[:, [1, 3]] <= h + 1e-3).all()
        assert ((detections[:, 4] >= 0) & (detections[:, 4] <= 1)).all()


def tiny_dino_cfg(num_classes: int = 4) -> dict:
    embed = 64
    msda = dict(type='MultiScaleDeformableAttention', embed_dims=embed, num_heads=4, dropout=0.0)
    ffn = dict(type='FFN', embed_dims=embed, feedforward_channels=128, num_fcs=2, ffn_drop=0.0)
    return dict(
        type='DINO',
        backbone=dict(type='InternImage', core_op='DCNv3', channels=16, depths=[1, 1, 1, 1], groups=[1, 2, 4, 8],
                      drop_path_rate=0.0, out_indices=(1, 2, 3)),
        neck=dict(type='ChannelMapper', in_channels=[32, 64, 128], kernel_size=1, out_channels=embed, act_cfg=None,
                  norm_cfg=dict(type='GN', num_groups=8), num_outs=4),
        bbox_head=dict(
            type='DINOHead', num_query=30, num_classes=num_classes, in_channels=embed, sync_cls_avg_factor=True,
            as_two_stage=True, with_box_refine=True,
            dn_cfg=dict(type='CdnQueryGenerator', noise_scale=dict(label=0.5, box=1.0),
                        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=10)),
            transformer=dict(
                type='DinoTransformer', two_stage_num_proposals=30,
                encoder=dict(type='DetrTransformerEncoder', num_layers=1, transformerlayers=dict(
                    type='BaseTransformerLayer', attn_cfgs=msda, ffn_cfgs=ffn,
                    operation_order=('self_attn', 'norm', 'ffn', 'norm'))),
                decoder=dict(type='DinoTransformerDecoder', num_layers=2, return_intermediate=True,
                             transformerlayers=dict(
                                 type='DetrTransformerDecoderLayer',
                                 attn_cfgs=[dict(type='MultiheadAttention', embed_dims=embed, num_heads=4,
                                                 dropout=0.0), msda],
                                 feedforward_channels=128, ffn_cfgs=ffn,
                                 operation_order=('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')))),
            positional_encoding=dict(type='SinePositionalEncoding', num_feats=embed // 2, temperature=20,
                                     normalize=True),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', cls_cost=dict(type='FocalLossCost', weight=2.0),
                                     reg_cost=dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                                     iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.0))),
        test_cfg=dict(max_per_img=10))


def test_tiny_dino_overfits_one_image():
    torch.manual_seed(0)
    model = build_detector(Config(dict(model=tiny_dino_cfg())).model)
    model.init_weights()
    model.train()
    gt_box = torch.tensor([[14., 18., 46., 54.]])
    gt_label = torch.tensor([2])
    img = torch.full((1, 3, 64, 64), -1.0)
    img[:, :, 18:54, 14:46] = 1.5
    img[:, 1, 18:54, 14:46] = -0.5  # a coloured rectangle
    metas = [dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=np.ones(4),
                  flip=False, batch_input_shape=(64, 64))]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    history = []
    for _ in range(200):
        losses = model(return_loss=True, img=img, img_metas=copy.deepcopy(metas), gt_bboxes=[gt_box],
                       gt_labels=[gt_label])
        loss, _ = model._parse_losses(losses)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history.append(loss.item())
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    assert last < first / 4, (first, last)

    model.eval()
    with torch.no_grad():
        result = model(return_loss=False, rescale=True, img=[img], img_metas=[metas])[0]
    best_label = max(range(len(result)), key=lambda c: result[c][:, 4].max() if len(result[c]) else -1)
    best = result[best_label][result[best_label][:, 4].argmax()]
    assert best_label == 2
    iou = bbox_overlaps(torch.from_numpy(best[None, :4]), gt_box).item()
    assert iou > 0.5, (best, iou)


def test_dn_targets_positions_and_weights():
    cfg = tiny_dino_cfg(num_classes=4)['bbox_head']
    head = build_head(dict(cfg, train_cfg=tiny_dino_cfg()['train_cfg']))
    # m = 3 GTs max in the batch, 2 groups -> pad 12, group size 6; this image has 2 GTs
    dn_meta = dict(pad_size=12, num_dn_group=2)
    gt_bboxes = torch.tensor([[0., 0., 32., 16.], [16., 16., 64., 64.]])
    gt_labels = torch.tensor([3, 1])
    labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds = head._get_dn_target_single(
        torch.zeros(12, 4), gt_bboxes, gt_labels, dict(img_shape=(64, 64, 3)), dn_meta)
    assert pos_inds.tolist() == [0, 1, 6, 7] and neg_inds.tolist() == [3, 4, 9, 10]
    assert labels.tolist() == [3, 1, 4, 4, 4, 4, 3, 1, 4, 4, 4, 4]  # background = num_classes = 4
    assert label_weights.tolist() == [1.0] * 12  # every slot is trained, as upstream
    assert bbox_weights[:, 0].tolist() == [1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert torch.allclose(bbox_targets[0], torch.tensor([0.25, 0.125, 0.5, 0.25]))
    assert torch.allclose(bbox_targets[7], torch.tensor([0.625, 0.625, 0.75, 0.75]))


def test_loss_weight_and_matcher_cost_may_differ():
    # mmdet's stock DETRHead asserts loss weight == matcher cost; DINO (FocalLoss 1.0 vs cost 2.0) must build
    cfg = tiny_dino_cfg()
    head = build_head(dict(cfg['bbox_head'], train_cfg=cfg['train_cfg']))
    assert head.loss_cls.loss_weight == 1.0 and head.assigner.cls_cost.weight == 2.0
    assert build_head(cfg['bbox_head']).train_cfg is None  # a test-only head builds without a matcher
    with pytest.raises(ValueError, match='as_two_stage'):
        build_head(dict(copy.deepcopy(cfg['bbox_head']), as_two_stage=False))
    with pytest.raises(ValueError, match='num_query'):
        build_head(dict(copy.deepcopy(cfg['bbox_head']), num_query=20))


def test_coordinate_to_encoding_matches_the_formula():
    coords = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    embedding = coordinate_to_encoding(coords, num_feats=4, temperature=100)
    assert embedding.shape == (1, 16)
    expected = []
    for v in (0.2, 0.1, 0.3, 0.4):  # order y, x, w, h
        for t in range(4):
            angle = v * 2 * math.pi / 100 ** (2 * (t // 2) / 4)
            expected.append(math.sin(angle) if t % 2 == 0 else math.cos(angle))
    assert torch.allclose(embedding[0], torch.tensor(expected), atol=1e-6)


def test_look_forward_twice_gradient_paths():
    """Layer l's box is refined from layer l-1's *un-detached* box (look forward twice), while the references fed
    through the decoder are detached: the last layer's boxes train reg_branches[l-1] but not reg_branches[l-2], and
    never the encoder's (two-stage) branch, whose top-k boxes enter the decoder detached."""
    cfg = tiny_dino_cfg()
    cfg['bbox_head']['transformer']['decoder']['num_layers'] = 3
    model = build_detector(Config(dict(model=cfg)).model)
    model.init_weights()
    model.train()
    img = torch.randn(1, 3, 64, 64)
    metas = [dict(img_shape=(64, 64, 3), batch_input_shape=(64, 64))]
    all_cls, all_boxes, _, _ = model.bbox_head(model.extract_feat(img), metas)
    assert all_boxes.shape == (3, 1, 30, 4)
    all_boxes[-1].sum().backward()
    grads = [sum(p.grad.abs().sum().item() for p in branch.parameters() if p.grad is not None)
             for branch in model.bbox_head.reg_branches]
    assert grads[2] > 0 and grads[1] > 0  # own branch and the previous layer's (look forward twice)
    assert grads[0] == 0 and grads[3] == 0  # two layers back / the encoder branch: detached


def test_dn_loss_values_by_hand():
    """Focal / L1 denoising losses on a hand case: averaged over the positives only (docs/deviations.md, DINO
    query denoising)."""
    cfg = tiny_dino_cfg(num_classes=4)
    head = build_head(dict(cfg['bbox_head'], train_cfg=cfg['train_cfg']))
    dn_meta = dict(pad_size=12, num_dn_group=2)
    gt_bboxes = [torch.tensor([[0., 0., 32., 16.], [16., 16., 64., 64.]])]
    gt_labels = [torch.tensor([3, 1])]
    cls_scores = torch.zeros(1, 12, 4)  # p = 0.5 everywhere
    box_preds = torch.full((1, 12, 4), 0.5)
    loss_cls, loss_bbox, _ = head.loss_dn_single(cls_scores, box_preds, gt_bboxes, gt_labels,
                                                 [dict(img_shape=(64, 64, 3))], dn_meta)
    # focal at p = 0.5: positive entry alpha * 0.5^2 * ln 2, negative entry (1 - alpha) * 0.5^2 * ln 2;
    # 4 positive entries (2 GTs x 2 groups), the other 12 * 4 - 4 = 44 entries negative; divided by 4 positives
    expected_cls = (4 * 0.25 * 0.25 + 44 * 0.75 * 0.25) * math.log(2) / 4
    assert loss_cls.item() == pytest.approx(expected_cls, rel=1e-5)
    # L1 to (0.25, 0.125, 0.5, 0.25) is 0.875 and to (0.625, 0.625, 0.75, 0.75) is 0.75; x2 groups, / 4, x weight 5
    assert loss_bbox.item() == pytest.approx(5 * 2 * (0.875 + 0.75) / 4, rel=1e-5)


def test_head_init_weights_zero_box_branches_and_prior_probability_class_bias():
    """As upstream's effective init (DINO is always two-stage, so every box branch's last layer starts at zero)."""
    model = build_detector(Config(dict(model=tiny_dino_cfg())).model)
    for branch in model.bbox_head.reg_branches:   # perturbed first: init_weights must set them, not inherit them
        torch.nn.init.normal_(branch[-1].weight)
        torch.nn.init.normal_(branch[-1].bias)
    model.init_weights()
    head = model.bbox_head
    for branch in head.reg_branches:
        assert torch.count_nonzero(branch[-1].weight) == 0
        assert torch.count_nonzero(branch[-1].bias) == 0
    prior_logit = -math.log((1 - 0.01) / 0.01)   # a 1% foreground prior, hand-computed
    for branch in head.cls_branches:
        torch.testing.assert_close(branch.bias, torch.full_like(branch.bias, prior_logit))
