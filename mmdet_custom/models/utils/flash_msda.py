"""``FlashMultiScaleDeformableAttention``: the FlashInternImage code base's variant of multi-scale deformable attention.

mmcv's ``MultiScaleDeformableAttention`` with two switches. ``use_softmax`` (default True) normalises each head's
``num_levels * num_points`` attention weights with a softmax, exactly as mmcv does; with False they are used raw.
``use_flash`` selected the original's fused CUDA kernel (which applied the softmax itself); that kernel is not
part of this project, so ``use_flash=True`` is refused at construction. No released config uses this module; it
is registered under the original's name so that configs naming it build. Works on the CPU (mmcv's PyTorch
sampling) and on CUDA (mmcv's kernel).
"""
from __future__ import annotations

import torch
from mmcv.cnn.bricks.registry import ATTENTION
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttention,
    MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch,
)
from torch import Tensor


@ATTENTION.register_module()
class FlashMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """Called like mmcv's ``MultiScaleDeformableAttention`` inside DINO's transformer layers (same parameters)."""

    def __init__(self, use_flash: bool = False, use_softmax: bool = True, **kwargs) -> None:
        if use_flash:
            raise ValueError('FlashMultiScaleDeformableAttention: use_flash=True needs the original DCNv4 package\'s '
                             'CUDA-only flash kernel, which this project does not provide; use use_flash=False')
        super().__init__(**kwargs)
        self.use_flash = use_flash
        self.use_softmax = use_softmax

    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                identity: Tensor | None = None, query_pos: Tensor | None = None,
                key_padding_mask: Tensor | None = None, reference_points: Tensor | None = None,
                spatial_shapes: Tensor | None = None, level_start_index: Tensor | None = None,
                **kwargs) -> Tensor:
        """Shapes as mmcv's: query ``(num_query, bs, C)`` (``(bs, num_query, C)`` with ``batch_first``), value
        ``(num_value, bs, C)``, reference_points ``(bs, num_query, num_levels, 2 or 4)``; returns query's shape."""
        if self.use_softmax:
            # Softmaxed weights are mmcv's own computation: one implementation of the sampling, not two.
            return super().forward(query, key=key, value=value, identity=identity, query_pos=query_pos,
                                   key_padding_mask=key_padding_mask, reference_points=reference_points,
                                   spatial_shapes=spatial_shapes, level_start_index=level_start_index, **kwargs)
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.permute(1, 0, 2), value.permute(1, 0, 2)
        bs, num_query, _ = query.shape
        _, num_value, _ = value.shape
        if int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum()) != num_value:
            raise ValueError(f'FlashMultiScaleDeformableAttention: spatial_shapes {spatial_shapes.tolist()} cover '
                             f'{int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())} positions but value has '
                             f'{num_value}')

        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, num_value, self.num_heads, -1)
        sampling_offsets = self.sampling_offsets(query).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points, 2)
        # use_softmax=False: the raw weights, the only difference from mmcv's forward
        attention_weights = self.attention_weights(query).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points)
        if reference_points.shape[-1] == 2:
            offset_normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            sampling_locations = (reference_points[:, :, None, :, None, :]
                                  + sampling_offsets / offset_normalizer[None, None, None, :, None, :])
        elif reference_points.shape[-1] == 4:
            sampling_locations = (reference_points[:, :, None, :, None, :2]
                                  + sampling_offsets / self.num_points * reference_points[:, :, None, :, None, 2:]
                                  * 0.5)
        else:
            raise ValueError(f'FlashMultiScaleDeformableAttention: the last dim of reference_points must be 2 or 4, '
                             f'got {reference_points.shape[-1]}')
        if value.is_cuda:
            output = MultiScaleDeformableAttnFunction.apply(
                value, spatial_shapes, level_start_index, sampling_locations, attention_weights, self.im2col_step)
        else:
            output = multi_scale_deformable_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity
