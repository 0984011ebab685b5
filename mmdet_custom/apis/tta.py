"""Test-time augmentation settings: ``test.py --tta`` turns a config's test pipeline into a multi-scale / flip one.

A config may carry a top-level ``tta`` dict::

    tta = dict(img_scale=[(1600, 800), (2000, 1000), (2400, 1200)], flip=True, flip_direction='horizontal')

Without it (or for the keys it leaves out) the test pipeline's own ``img_scale`` is kept and a horizontal flip is
added. The models merge the augmentations themselves in ``aug_test``: mmdet's rules for Mask R-CNN / Cascade
(proposals merged, then boxes and mask probabilities averaged), :meth:`DINOHead.aug_test` for DINO and CB-DINO
(class-wise NMS over the union, ``model.test_cfg.tta_merge``).
"""
from __future__ import annotations

from mmcv_custom.cli.errors import UserError

DEFAULT_TTA = dict(flip=True, flip_direction='horizontal')
TTA_KEYS = ('img_scale', 'scale_factor', 'flip', 'flip_direction')


def _scale_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def apply_tta(cfg, field: str = 'data.test') -> str:
    """Set ``MultiScaleFlipAug``'s scales and flip in ``cfg.data.test`` (in place) from ``cfg.tta`` or the defaults,
    and test one image per batch (mmdet's ``aug_test`` takes one); returns a one-line description."""
    tta = dict(cfg.get('tta') or {})
    unknown = sorted(set(tta) - set(TTA_KEYS))
    if unknown:
        raise UserError(f'config field tta: unknown key(s) {", ".join(unknown)} (known: {", ".join(TTA_KEYS)})')
    test_cfgs = cfg.data.test if isinstance(cfg.data.test, list) else [cfg.data.test]
    description = ''
    for ds_cfg in test_cfgs:
        pipeline = ds_cfg.get('pipeline') or ds_cfg.get('dataset', {}).get('pipeline') or []
        steps = [step for step in pipeline if step.get('type') == 'MultiScaleFlipAug']
        if not steps:
            raise UserError(f'--tta: {field}.pipeline has no MultiScaleFlipAug step to set scales and flip on')
        step = steps[0]
        if 'img_scale' in tta or 'scale_factor' in tta:  # MultiScaleFlipAug takes exactly one of the two
            step.pop('img_scale', None)
            step.pop('scale_factor', None)
            key = 'img_scale' if 'img_scale' in tta else 'scale_factor'
            step[key] = _scale_list(tta[key])
        step.flip = tta.get('flip', DEFAULT_TTA['flip'])
        step.flip_direction = tta.get('flip_direction', DEFAULT_TTA['flip_direction'])
        scales = step.get('img_scale', step.get('scale_factor'))
        num_augs = len(_scale_list(scales)) * (1 + len(_scale_list(step.flip_direction)) * bool(step.flip))
        description = (f'test-time augmentation: {num_augs} views per image (scales {scales}, '
                       f'flip {step.flip_direction if step.flip else "off"})')
    cfg.data.test_dataloader = dict(cfg.data.get('test_dataloader') or {}, samples_per_gpu=1)
    return description
