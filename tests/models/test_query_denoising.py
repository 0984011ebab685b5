"""Contrastive query denoising: group count, layout, attention mask and noise, checked on hand-made batches."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmdet_custom.models.utils.query_denoising import CdnQueryGenerator, DnQueryGenerator, build_dn_generator

HIDDEN, NUM_CLASSES, NUM_QUERIES = 8, 3, 5
IMG_META = dict(img_shape=(100, 200, 3))  # h = 100, w = 200


def make_generator(label=0.0, box=0.0, num_classes=NUM_CLASSES, **group_cfg) -> CdnQueryGenerator:
    group_cfg = group_cfg or dict(dynamic=True, num_groups=None, num_dn_queries=7)
    return build_dn_generator(dict(type='CdnQueryGenerator', num_queries=NUM_QUERIES, hidden_dim=HIDDEN,
                                   num_classes=num_classes, noise_scale=dict(label=label, box=box),
                                   group_cfg=group_cfg))


def two_image_batch():
    """Image 0: three boxes, image 1: one box (xyxy pixels on a 200 x 100 image)."""
    boxes0 = torch.tensor([[20., 10., 60., 50.], [0., 0., 200., 100.], [100., 40., 120., 90.]])
    boxes1 = torch.tensor([[50., 20., 150., 80.]])
    return [boxes0, boxes1], [torch.tensor([2, 0, 1]), torch.tensor([1])], [IMG_META, IMG_META]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_groups_padding_and_mask_follow_the_dino_rule():
    # max GT count m = 3, num_dn_queries 7 -> 7 // 3 = 2 groups; pad size 2 * m * groups = 12; 12 + 5 = 17 queries.
    generator = make_generator()
    gt_bboxes, gt_labels, metas = two_image_batch()
    embedding = nn.Embedding(NUM_CLASSES, HIDDEN)
    label_query, bbox_query, attn_mask, dn_meta = generator(gt_bboxes, gt_labels, embedding, metas)
    assert dn_meta == {'pad_size': 12, 'num_dn_group': 2}
    assert label_query.shape == (2, 12, HIDDEN) and bbox_query.shape == (2, 12, 4)
    assert attn_mask.shape == (17, 17) and attn_mask.dtype == torch.bool

    expected = torch.zeros(17, 17, dtype=torch.bool)
    expected[0:6, 6:12] = True     # group 0 (rows 0-5) cannot see group 1
    expected[6:12, 0:6] = True     # group 1 cannot see group 0
    expected[12:17, 0:12] = True   # matching queries cannot see any denoising query
    assert torch.equal(attn_mask, expected)


def test_noise_free_queries_land_in_their_slots():
    generator = make_generator(label=0.0, box=0.0)
    gt_bboxes, gt_labels, metas = two_image_batch()
    embedding = nn.Embedding(NUM_CLASSES, HIDDEN)
    label_query, bbox_query, _, _ = generator(gt_bboxes, gt_labels, embedding, metas)
    # block k starts at 3k; image 0 fills 3 slots per block, image 1 one slot
    weight = embedding.weight.detach()
    for block in range(4):
        start = 3 * block
        assert torch.allclose(label_query[0, start:start + 3], weight[[2, 0, 1]])
        assert torch.allclose(label_query[1, start], weight[1])
        assert torch.count_nonzero(label_query[1, start + 1:start + 3]) == 0
        assert torch.count_nonzero(bbox_query[1, start + 1:start + 3]) == 0
    # first box of image 0: cx 40/200, cy 30/100, w 40/200, h 40/100 -> logits
    expected0 = torch.tensor([logit(0.2), logit(0.3), logit(0.2), logit(0.4)])
    # second box covers the whole image: (0.5, 0.5, 1, 1); 1.0 is clamped by eps 1e-3 -> log(1 / 1e-3)
    expected1 = torch.tensor([0.0, 0.0, math.log(1e3), math.log(1e3)])
    # image 1: cx 100/200, cy 50/100, w 100/200, h 60/100
    expected_img1 = torch.tensor([0.0, 0.0, 0.0, logit(0.6)])
    for block in range(4):
        assert torch.allclose(bbox_query[0, 3 * block], expected0, atol=1e-5)
        assert torch.allclose(bbox_query[0, 3 * block + 1], expected1, atol=1e-5)
        assert torch.allclose(bbox_query[1, 3 * block], expected_img1, atol=1e-5)


def test_static_groups_and_no_gt():
    generator = make_generator(dynamic=False, num_groups=3)
    gt_bboxes, gt_labels, metas = two_image_batch()
    _, _, attn_mask, dn_meta = generator(gt_bboxes, gt_labels, nn.Embedding(NUM_CLASSES, HIDDEN), metas)
    assert dn_meta == {'pad_size': 18, 'num_dn_group': 3}  # 2 * 3 * 3
    assert attn_mask[0:6, 6:18].all() and not attn_mask[0:6, 0:6].any() and not attn_mask[0:18, 18:].any()

    # no GT anywhere: one group, zero denoising queries, nothing masked
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    labels = [torch.zeros(0, dtype=torch.long)] * 2
    label_query, bbox_query, attn_mask, dn_meta = make_generator()(
        empty, labels, nn.Embedding(NUM_CLASSES, HIDDEN), metas)
    assert dn_meta == {'pad_size': 0, 'num_dn_group': 1}
    assert label_query.shape == (2, 0, HIDDEN) and bbox_query.shape == (2, 0, 4)
    assert torch.equal(attn_mask, torch.zeros(NUM_QUERIES, NUM_QUERIES, dtype=torch.bool))


def test_eval_mode_returns_nothing():
    generator = make_generator().eval()
    gt_bboxes, gt_labels, metas = two_image_batch()
    assert generator(gt_bboxes, gt_labels, nn.Embedding(NUM_CLASSES, HIDDEN), metas) == (None, None, None, None)


def test_box_noise_positive_inside_negative_outside():
    # box scale 1: positives move each corner by < (w/2, h/2), negatives by >= that (unless clamped to the image).
    generator = make_generator(box=1.0, dynamic=False, num_groups=50)
    box = torch.tensor([[80., 30., 120., 70.]])  # centred, far from the borders: (0.4..0.6, 0.3..0.7)
    _, bbox_query, _, dn_meta = generator([box], [torch.tensor([0])], nn.Embedding(NUM_CLASSES, HIDDEN), [IMG_META])
    noised = bbox_query[0].sigmoid()  # (100, 4) cxcywh; m = 1, so block k is slot k; even = positive
    corners = torch.cat([noised[:, :2] - noised[:, 2:] / 2, noised[:, :2] + noised[:, 2:] / 2], dim=1)
    gt = torch.tensor([0.4, 0.3, 0.6, 0.7])
    half = torch.tensor([0.1, 0.2, 0.1, 0.2])
    shift = (corners - gt).abs() / half  # in units of half the width / height
    pos, neg = shift[0::2], shift[1::2]
    assert (pos < 1 + 1e-3).all()
    # negatives: corners clamped to the image, or crossed (negative w/h, clamped to ~0 by the logit eps), lose
    # their shift; every other corner moved by at least half the width / height
    clamped = (corners[1::2] <= 1e-4) | (corners[1::2] >= 1 - 1e-4)
    collapsed = (noised[1::2, 2:] < 2e-3).repeat(1, 2)
    exact = ~(clamped | collapsed)
    assert exact.float().mean() > 0.5
    assert (neg[exact] > 1 - 1e-3).all()
    assert pos.mean() == pytest.approx(0.5, abs=0.1)  # uniform on [0, 1)


def test_label_noise_rate():
    # label scale 1 -> a label is resampled with probability 0.5, so it changes with probability 0.5 * (1 - 1/C)
    num_classes = 10
    generator = make_generator(label=1.0, num_classes=num_classes, dynamic=False, num_groups=1000)
    embedding = nn.Embedding(num_classes, HIDDEN)
    torch.nn.init.normal_(embedding.weight)
    box = torch.tensor([[80., 30., 120., 70.]])
    label_query, _, _, _ = generator([box], [torch.tensor([4])], embedding, [IMG_META])
    original = embedding.weight[4]
    changed = (label_query[0] - original).abs().sum(-1) > 1e-6
    assert changed.float().mean().item() == pytest.approx(0.45, abs=0.03)


@pytest.mark.parametrize('group_cfg', [dict(dynamic=True, num_dn_queries=None), dict(dynamic=False, num_groups=0),
                                       dict(dynamic=True, num_dn_queries=2.5)])
def test_bad_group_cfg_names_the_field(group_cfg):
    with pytest.raises(ValueError, match='group_cfg'):
        make_generator(**group_cfg)


def test_build_dn_generator():
    assert build_dn_generator(None) is None
    generator = build_dn_generator(dict(type='DnQueryGenerator', num_queries=4, hidden_dim=8, num_classes=2,
                                        group_cfg=dict(dynamic=True, num_dn_queries=100)))
    assert type(generator) is DnQueryGenerator and generator.get_num_groups(3) == 33
    with pytest.raises(ValueError, match='dn_cfg.type'):
        build_dn_generator(dict(type='Nope'))
