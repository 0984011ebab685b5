"""One Mask R-CNN InternImage-T and one DINO InternImage-T training step on CUDA (marker `cuda`).

The configs' own detectors on tiny synthetic COCO data (as tests/configs/test_train_step.py and
tests/models/test_dino.py do on the CPU), moved to the GPU: losses finite, gradients finite and non-zero, the
compiled CUDA DCNv3 kernel in use, parameters updated. Skipped, with the reason, unless a CUDA device is visible,
ops_dcnv3._C has CUDA and mmcv-full was built with its CUDA ops (RoIAlign, MSDeformAttn on CUDA).
"""
from __future__ import annotations

import pytest
import torch

from tests.ops_dcnv3.dcnv3_cases import cuda_kernel_skip_reason


def _skip_reason() -> str | None:
    reason = cuda_kernel_skip_reason()
    if reason is not None:
        return reason
    try:
        from mmcv.ops import get_compiling_cuda_version
    except ImportError:
        return 'mmcv-full with compiled ops is not installed'
    if get_compiling_cuda_version() in ('', 'not available'):
        return 'mmcv-full was built without its CUDA ops'
    return None


pytestmark = [pytest.mark.cuda, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


def to_cuda(batch: dict) -> dict:
    """Tensors and lists of tensors to the GPU (BitmapMasks stay on the host, as MMDataParallel leaves them)."""
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            moved[key] = value.cuda()
        elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            moved[key] = [v.cuda() for v in value]
        else:
            moved[key] = value
    return moved


def check_step(model, batch: dict, compiled_core_calls: list[str], watched: tuple[str, ...]) -> None:
    from mmcv.runner import build_optimizer
    model.cuda().train()
    optimizer = build_optimizer(model, dict(type='AdamW', lr=1e-4, weight_decay=0.05))
    before = {name: p.detach().clone() for name, p in model.named_parameters() if name in watched}
    losses = model(return_loss=True, **to_cuda(batch))
    loss, log_vars = model._parse_losses(losses)
    assert torch.isfinite(loss) and loss > 0, log_vars
    optimizer.zero_grad()
    loss.backward()
    params = dict(model.named_parameters())
    for name in watched:
        grad = params[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    optimizer.step()
    for name, value in before.items():
        assert not torch.equal(value, params[name].detach()), f'{name} did not change'
    assert compiled_core_calls and set(compiled_core_calls) == {'cuda'}, 'the compiled CUDA DCNv3 kernel ran'


def test_cuda_mask_rcnn_t_train_step(tmp_path, compiled_core_calls):
    from mmcv.parallel import collate
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    from mmdet_custom.apis import revert_sync_bn_if_single_process
    from tests.configs.test_train_step import IMAGE_HW, _config, _unwrap
    from tests.helpers import make_coco_dataset
    data = make_coco_dataset(str(tmp_path), num_images=2, image_size=IMAGE_HW, num_classes=80, seed=0)
    cfg = _config('mask_rcnn_internimage_t_fpn_1x_coco.py', data)
    model = revert_sync_bn_if_single_process(build_detector(cfg.model), distributed=False, logger=None)
    train_set = build_dataset(cfg.data.train)
    batch = _unwrap(collate([train_set[i] for i in range(2)], samples_per_gpu=2))
    check_step(model, batch, compiled_core_calls,
               ('backbone.patch_embed.conv1.weight', 'backbone.levels.0.blocks.0.dcn.input_proj.weight',
                'rpn_head.rpn_conv.weight'))


def test_cuda_dino_t_train_step(tmp_path, compiled_core_calls):
    from mmcv import Config
    from mmdet.models import build_detector

    from tests.models.test_dino import T_CONFIG, synthetic_batch
    cfg = Config.fromfile(str(T_CONFIG))
    cfg.model.backbone.init_cfg = None
    model = build_detector(cfg.model)
    check_step(model, synthetic_batch(tmp_path), compiled_core_calls,
               ('backbone.patch_embed.conv1.weight', 'backbone.levels.0.blocks.0.dcn.input_proj.weight',
                'bbox_head.transformer.query_embed.weight'))
