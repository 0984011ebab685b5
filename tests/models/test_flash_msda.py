"""FlashMultiScaleDeformableAttention against the computation written out here (locations, softmaxed or raw weights,
mmcv's PyTorch sampling), and against mmcv's MultiScaleDeformableAttention with the same weights for use_softmax;
use_flash is refused in one line; it builds and runs inside DINO's decoder layer."""
from __future__ import annotations

import pytest
import torch
from mmcv.cnn.bricks.transformer import build_transformer_layer
from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttention, multi_scale_deformable_attn_pytorch

import mmdet_custom  # noqa: F401  (registers FlashMultiScaleDeformableAttention)
from mmdet_custom.models.utils import FlashMultiScaleDeformableAttention

EMBED, HEADS, LEVELS, POINTS = 32, 4, 2, 3
SHAPES = torch.tensor([[6, 5], [3, 3]])  # non-square levels
START = torch.tensor([0, 30])


def randomise(module: torch.nn.Module) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn_like(param) * 0.3)


def inputs(box_references: bool, batch_first: bool = False):
    g = torch.Generator().manual_seed(1)
    bs, num_query, num_value = 2, 7, int((SHAPES[:, 0] * SHAPES[:, 1]).sum())
    query = torch.randn(num_query, bs, EMBED, generator=g)
    value = torch.randn(num_value, bs, EMBED, generator=g)
    query_pos = torch.randn(num_query, bs, EMBED, generator=g)
    reference = torch.rand(bs, num_query, LEVELS, 4 if box_references else 2, generator=g)
    padding = torch.zeros(bs, num_value, dtype=torch.bool)
    padding[1, -4:] = True
    if batch_first:
        query, value, query_pos = (t.transpose(0, 1) for t in (query, value, query_pos))
    return dict(query=query, value=value, query_pos=query_pos, key_padding_mask=padding,
                reference_points=reference, spatial_shapes=SHAPES, level_start_index=START)


def pair(batch_first: bool = False, **flash_kwargs):
    common = dict(embed_dims=EMBED, num_heads=HEADS, num_levels=LEVELS, num_points=POINTS, dropout=0.0,
                  batch_first=batch_first)
    flash = FlashMultiScaleDeformableAttention(**common, **flash_kwargs)
    randomise(flash)
    mmcv_msda = MultiScaleDeformableAttention(**common)
    mmcv_msda.load_state_dict(flash.state_dict())
    return flash.eval(), mmcv_msda.eval()


def expected_output(flash, args, box_references: bool, softmax: bool) -> torch.Tensor:
    """Written out here: the Deformable-DETR sampling locations, the weights as the linear layer gives them (softmaxed
    over each head's levels x points when ``softmax``), mmcv's PyTorch bilinear sampling; (num_query, bs, C) in/out."""
    query = (args['query'] + args['query_pos']).transpose(0, 1)
    bs, nq, _ = query.shape
    value = flash.value_proj(args['value'].transpose(0, 1)).masked_fill(args['key_padding_mask'][..., None], 0)
    value = value.view(bs, -1, HEADS, EMBED // HEADS)
    offsets = flash.sampling_offsets(query).view(bs, nq, HEADS, LEVELS, POINTS, 2)
    weights = flash.attention_weights(query).view(bs, nq, HEADS, LEVELS * POINTS)
    if softmax:
        weights = weights.exp() / weights.exp().sum(-1, keepdim=True)
    weights = weights.view(bs, nq, HEADS, LEVELS, POINTS)
    ref = args['reference_points'][:, :, None, :, None]
    if box_references:
        locations = ref[..., :2] + offsets / POINTS * ref[..., 2:] * 0.5
    else:
        wh = torch.stack([SHAPES[:, 1], SHAPES[:, 0]], -1).to(offsets)  # (x, y) normaliser = (W, H)
        locations = ref + offsets / wh[None, None, None, :, None, :]
    sampled = multi_scale_deformable_attn_pytorch(value, SHAPES, locations, weights)
    return flash.output_proj(sampled).transpose(0, 1) + args['query']


@pytest.mark.parametrize('box_references', [False, True])
@pytest.mark.parametrize('batch_first', [False, True])
def test_softmax_path(box_references, batch_first):
    flash, mmcv_msda = pair(batch_first)
    assert set(flash.state_dict()) == set(mmcv_msda.state_dict())  # mmcv MSDA checkpoints load unchanged
    args = inputs(box_references, batch_first)
    out = flash(**args)
    seq_first = {k: (v.transpose(0, 1) if batch_first and k in ('query', 'value', 'query_pos') else v)
                 for k, v in args.items()}
    expected = expected_output(flash, seq_first, box_references, softmax=True)
    torch.testing.assert_close(out.transpose(0, 1) if batch_first else out, expected)
    torch.testing.assert_close(out, mmcv_msda(**args))


@pytest.mark.parametrize('box_references', [False, True])
def test_raw_weights_path(box_references):
    flash, mmcv_msda = pair(use_softmax=False)
    args = inputs(box_references)
    out = flash(**args)
    torch.testing.assert_close(out, expected_output(flash, args, box_references, softmax=False))
    assert not torch.allclose(out, mmcv_msda(**args), atol=1e-3)  # it is not the softmax path


def test_use_flash_is_refused_in_one_line():
    with pytest.raises(ValueError, match='use_flash=True needs the original DCNv4 package'):
        FlashMultiScaleDeformableAttention(use_flash=True, embed_dims=EMBED, num_heads=HEADS)


def test_runs_inside_a_dino_decoder_layer():
    layer = build_transformer_layer(dict(
        type='DetrTransformerDecoderLayer',
        attn_cfgs=[dict(type='MultiheadAttention', embed_dims=EMBED, num_heads=HEADS, dropout=0.0),
                   dict(type='FlashMultiScaleDeformableAttention', embed_dims=EMBED, num_heads=HEADS,
                        num_levels=LEVELS, num_points=POINTS, dropout=0.0, use_softmax=True)],
        feedforward_channels=64,
        ffn_cfgs=dict(type='FFN', embed_dims=EMBED, feedforward_channels=64, num_fcs=2, ffn_drop=0.0),
        operation_order=('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')))
    assert isinstance(layer.attentions[1], FlashMultiScaleDeformableAttention)
    args = inputs(box_references=True)
    out = layer(args['query'], key=None, value=args['value'], query_pos=args['query_pos'],
                key_padding_mask=args['key_padding_mask'], reference_points=args['reference_points'],
                spatial_shapes=SHAPES, level_start_index=START)
    assert out.shape == args['query'].shape and torch.isfinite(out).all()
    out.sum().backward()
    assert layer.attentions[1].sampling_offsets.weight.grad.abs().sum() > 0
