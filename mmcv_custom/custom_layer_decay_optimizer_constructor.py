"""Layer-wise learning-rate decay for InternImage detectors (registry name ``CustomLayerDecayOptimizerConstructor``).

Every trainable parameter gets a *layer id*: 0 for the stem, 1.. for the backbone blocks in order, and
``num_layers + 1`` for everything that is not backbone (neck, heads). Its lr is ``base_lr * rate ** (Lmax - 1 - id)``
with ``Lmax = num_layers + 2``, so the heads train at the base lr and earlier backbone layers progressively slower.
Biases, 1-D parameters, norms and attention sampling offsets get no weight decay.

The id rule reproduces upstream's exactly, including its oddities (docs/deviations.md), because the released models
were trained with it:

* ``levels.{s}.post_norms.{k}`` takes the id of *block k* of stage s (the position in ``post_norms``, not the block
  it follows);
* a stage's ``norm`` and ``downsample`` take the id of the next stage's first block, except stage 3's ``norm`` which
  takes stage 2's downsample id;
* DINO's ``bbox_head.transformer.level_embeds`` takes the stem's id 0;
* CB backbones (``backbone.cb_modules.*``) match no backbone rule and get the head's id (no decay);
* ``offset_lr_scale`` applies to names containing ``sampling_offsets`` / ``reference_points`` and to
  FlashInternImage's DCNv4 ``offset_mask`` projections (not their depth-wise ``offset_mask_dw`` convs), i.e. never
  to the backbone's DCNv3 ``offset`` layers (the FlashInternImage constructor added the ``offset_mask`` rule; on
  InternImage models it matches nothing, so one constructor serves both families).

Usage::

    optimizer = dict(type='AdamW', lr=1e-4, weight_decay=0.05, constructor='CustomLayerDecayOptimizerConstructor',
                     paramwise_cfg=dict(num_layers=30, layer_decay_rate=0.9, depths=[4, 4, 18, 4]))
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from mmcv.runner import DefaultOptimizerConstructor, get_dist_info
from mmcv.runner.optimizer.builder import OPTIMIZER_BUILDERS
from mmcv.utils import get_logger
from torch import nn

REQUIRED_KEYS = ('num_layers', 'layer_decay_rate', 'depths')
OPTIONAL_KEYS = {'offset_lr_scale': 1.0, 'backbone_small_lr': False, 'dino_head': False}
BACKBONE_STAGE_PREFIXES = ('backbone.levels', 'backbone.layers')
OFFSET_NAME_PARTS = ('sampling_offsets', 'reference_points')
DCNV4_OFFSET_MASK, DCNV4_OFFSET_MASK_DW = 'offset_mask', 'offset_mask_dw'


def is_dcnv4_offset_mask(name: str) -> bool:
    """DCNv4's offset/mask projection (``...dcn.offset_mask.weight``), not its depth-wise conv."""
    return DCNV4_OFFSET_MASK in name and DCNV4_OFFSET_MASK_DW not in name


def get_layer_id(name: str, num_max_layer: int, depths: Sequence[int]) -> int:
    """Layer id of parameter ``name`` (a name of the unwrapped detector) under upstream's rule.

    ``num_max_layer`` is ``num_layers + 2``; parameters outside the backbone's stem and stages get
    ``num_max_layer - 1``.
    """
    if name.startswith('backbone.patch_embed'):
        return 0
    if 'level_embeds' in name:  # DINO transformer level embeddings: treated like the stem (as upstream)
        return 0
    if name.startswith(BACKBONE_STAGE_PREFIXES):
        parts = name.split('.')
        stage = int(parts[2])
        if parts[3] not in ('downsample', 'norm'):
            # blocks.{b} -> b-th block of the stage; post_norms.{k} -> k-th block too (upstream's odd id)
            return int(parts[4]) + 1 + sum(depths[:stage])
        # the stage's norm / downsample: id of the next stage's first block; stage 3 and later reuse stage 2's
        return 1 + sum(depths[:min(stage, 2) + 1])
    return num_max_layer - 1


def is_no_decay(name: str, param: nn.Parameter) -> bool:
    """Upstream's no-weight-decay rule: 1-D tensors, biases, norms, relative positions, sampling offsets."""
    return (len(param.shape) == 1 or name.endswith('.bias') or 'relative_position' in name or 'norm' in name
            or 'sampling_offsets' in name)


@OPTIMIZER_BUILDERS.register_module()
class CustomLayerDecayOptimizerConstructor(DefaultOptimizerConstructor):
    """mmcv optimizer constructor with layer-wise lr decay; one parameter group per (layer id, decay, suffix).

    ``paramwise_cfg`` keys: ``num_layers``, ``layer_decay_rate``, ``depths`` (required); ``offset_lr_scale``
    (1.0), ``backbone_small_lr`` (False), ``dino_head`` (False).
    """

    def _validate_cfg(self) -> None:
        super()._validate_cfg()
        if not self.paramwise_cfg:
            raise ValueError('optimizer.paramwise_cfg: CustomLayerDecayOptimizerConstructor needs paramwise_cfg with '
                             f'{", ".join(REQUIRED_KEYS)}')
        missing = [key for key in REQUIRED_KEYS if key not in self.paramwise_cfg]
        if missing:
            raise KeyError(f'optimizer.paramwise_cfg.{missing[0]} is required by CustomLayerDecayOptimizerConstructor')
        unknown = sorted(set(self.paramwise_cfg) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
        if unknown:
            raise KeyError(f'optimizer.paramwise_cfg.{unknown[0]} is not a CustomLayerDecayOptimizerConstructor key '
                           f'(valid: {", ".join(REQUIRED_KEYS + tuple(OPTIONAL_KEYS))})')
        if self.base_lr is None:
            raise KeyError('optimizer.lr is required by CustomLayerDecayOptimizerConstructor')
        if self.base_wd is None:
            raise KeyError('optimizer.weight_decay is required by CustomLayerDecayOptimizerConstructor')

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = '', is_dcn_module=None) -> None:
        """Append one parameter group per (layer id, decay / no_decay, lr suffix) to ``params``.

        ``prefix`` and ``is_dcn_module`` are part of mmcv's signature and unused (the names of
        ``module.named_parameters()`` are used as they are).
        """
        cfg = {**OPTIONAL_KEYS, **self.paramwise_cfg}
        num_max_layer = cfg['num_layers'] + 2
        rate = cfg['layer_decay_rate']
        depths = list(cfg['depths'])

        groups: dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen parameters stay out of the optimizer
            if is_no_decay(name, param):
                decay_tag, weight_decay = 'no_decay', 0.
            else:
                decay_tag, weight_decay = 'decay', self.base_wd
            layer_id = get_layer_id(name, num_max_layer, depths)
            scale = rate ** (num_max_layer - 1 - layer_id)
            if cfg['backbone_small_lr'] and scale < 1:
                scale *= 0.1
            suffix = ''
            is_offset = any(part in name for part in OFFSET_NAME_PARTS)
            if cfg['dino_head'] and layer_id == num_max_layer - 1 and is_offset:
                suffix, scale = '_0.1x', scale * 0.1
            elif is_offset or is_dcnv4_offset_mask(name):
                suffix, scale = '_offset_lr_scale', scale * cfg['offset_lr_scale']
            group_name = f'layer_{layer_id}_{decay_tag}{suffix}'
            if group_name not in groups:
                groups[group_name] = dict(weight_decay=weight_decay, params=[], param_names=[], lr_scale=scale,
                                          group_name=group_name, lr=scale * self.base_lr)
            groups[group_name]['params'].append(param)
            groups[group_name]['param_names'].append(name)

        rank, _ = get_dist_info()
        if rank == 0:
            summary = {name: {key: group[key] for key in ('param_names', 'lr_scale', 'lr', 'weight_decay')}
                       for name, group in groups.items()}
            get_logger('mmdet').info(f'Param groups = {json.dumps(summary, indent=2)}')
        params.extend(groups.values())
