"""Mixed precision (``train.py --amp fp16|bf16``, ``amp = dict(dtype=...)``): the config checks, and real bf16
training steps on the CPU of the demo Mask R-CNN (mmdet's two-stage family: RPN NMS, RoIAlign, mask head), the demo
DINO (the DETR family: deformable attention, Hungarian matching, denoising) and the FlashInternImage (DCNv4) demo,
each with its forward observed in bfloat16, finite losses and float32 gradients on float32 weights."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.parallel import collate

import mmdet_custom  # noqa: F401
from mmcv_custom.cli.errors import UserError
from mmdet_custom.apis.amp import apply_mixed_precision, configure_mixed_precision
from tests.helpers import make_coco_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('amp, message', [
    (dict(dtype='fp8'), "config field amp.dtype: must be one of 'fp16', 'bf16', got 'fp8'"),
    (dict(dtype='fp16'), '--amp fp16 (amp.dtype=fp16) needs a CUDA device: mmdet scales fp16 losses with '
                         'torch.cuda.amp; on the CPU use --amp bf16'),
])
def test_bad_amp_settings_are_one_line_errors(amp, message):
    with pytest.raises(UserError) as error:
        configure_mixed_precision(Config(dict(amp=amp)), 'cpu')
    assert str(error.value) == message


def test_bf16_beside_fp16_is_refused():
    with pytest.raises(UserError, match=r'^--amp bf16 \(amp.dtype=bf16\) and the config field fp16 both ask'):
        configure_mixed_precision(Config(dict(amp=dict(dtype='bf16'), fp16=dict(loss_scale=512.))), 'cpu')


def test_fp16_on_cuda_is_mmdets_own_fp16():
    cfg = Config(dict(amp=dict(dtype='fp16')))
    assert configure_mixed_precision(cfg, 'cuda') == 'fp16'
    assert cfg.fp16 == dict(loss_scale='dynamic')
    kept = Config(dict(amp=dict(dtype='fp16'), fp16=dict(loss_scale=dict(init_scale=512))))
    configure_mixed_precision(kept, 'cuda')
    assert kept.fp16 == dict(loss_scale=dict(init_scale=512))  # the config's own loss scale wins
    assert configure_mixed_precision(Config(dict()), 'cuda') is None


def tiny_config(name: str, data: dict) -> Config:
    cfg = Config.fromfile(str(REPO / 'configs/demo' / name))
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.depths = [1, 1, 1, 1]
    for split in ('train', 'test'):
        cfg.data[split].update(ann_file=data['ann_file'], img_prefix=data['img_prefix'], classes=data['classes'])
    cfg.amp = dict(dtype='bf16')
    return cfg


@pytest.mark.parametrize('config', ['mask_rcnn_internimage_demo_shapes.py', 'dino_internimage_demo_shapes.py',
                                    'mask_rcnn_flash_internimage_demo_shapes.py'])
def test_bf16_training_step_on_the_cpu(tmp_path, config):
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    data = make_coco_dataset(str(tmp_path), num_images=2, image_size=(64, 96), num_classes=4)
    cfg = tiny_config(config, data)
    assert configure_mixed_precision(cfg, 'cpu') == 'bf16'
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    apply_mixed_precision(cfg, model, 'cpu')
    seen = []
    model.backbone.register_forward_hook(lambda module, args, out: seen.append(out[-1].dtype))
    train_set = build_dataset(cfg.data.train)
    batch = collate([train_set[i] for i in range(2)], samples_per_gpu=2)
    batch = {key: value.data[0] for key, value in batch.items()}
    model.train()
    outputs = model.train_step(batch, None)
    assert seen == [torch.bfloat16]  # the backbone really ran under bf16 autocast
    assert torch.isfinite(outputs['loss']) and outputs['loss'] > 0
    assert all(np.isfinite(v) for v in outputs['log_vars'].values())
    outputs['loss'].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 10
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert all(p.dtype == torch.float32 for p in model.parameters())

    model.eval()
    test_set = build_dataset(cfg.data.test)
    sample = collate([test_set[0]], samples_per_gpu=1)
    def unwrap(value):  # DataContainer (Mask R-CNN's test pipeline) or a plain tensor (DINO's)
        return value if isinstance(value, torch.Tensor) else value.data[0]

    with torch.no_grad():
        result = model(return_loss=False, rescale=True, img=[unwrap(sample['img'][0])],
                       img_metas=[unwrap(sample['img_metas'][0])])
    boxes = result[0][0] if isinstance(result[0], tuple) else result[0]
    assert len(boxes) == 4 and all(b.dtype == np.float32 and np.isfinite(b).all() for b in boxes)


class _DtypeRecorder:
    """Stands in for a compiled extension module: records the dtype of each named entry point's first argument."""

    def __init__(self, ext, seen: dict):
        self.ext, self.seen = ext, seen

    def __getattr__(self, name):
        function = getattr(self.ext, name)

        def record(*args, **kwargs):
            self.seen.setdefault(name, set()).add(args[0].dtype)
            return function(*args, **kwargs)
        return record


def test_bf16_inference_runs_kernels_in_bf16_and_box_ops_in_float32(tmp_path, monkeypatch):
    """``--precision bf16`` (apply_inference_precision) of the demo Mask R-CNN: the DCNv3 CPU kernel receives bf16
    (its own bf16 path, no float32 round trip), NMS and RoIAlign float32, the heads' last layers (class logits, box
    deltas, mask logits) float32, the boxes come back float32, and the backbone features stay within 3% (relative
    L2) of a float32 run of the same weights."""
    import mmcv.ops  # noqa: F401  (imports mmcv.ops.nms and mmcv.ops.roi_align, patched below)
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    import ops_dcnv3.functions.dcnv3_func as dcnv3_func
    from mmdet_custom.apis.amp import apply_inference_precision
    if not dcnv3_func.extension_available():
        pytest.skip('ops_dcnv3._C is not built (make setup builds it)')
    roi_align_module, nms_module = sys.modules['mmcv.ops.roi_align'], sys.modules['mmcv.ops.nms']
    seen: dict = {}
    extension = dcnv3_func.load_extension()
    monkeypatch.setattr(dcnv3_func, 'load_extension', lambda: _DtypeRecorder(extension, seen))
    monkeypatch.setattr(nms_module, 'ext_module', _DtypeRecorder(nms_module.ext_module, seen))
    monkeypatch.setattr(roi_align_module, 'ext_module', _DtypeRecorder(roi_align_module.ext_module, seen))

    data = make_coco_dataset(str(tmp_path), num_images=1, image_size=(64, 96), num_classes=4)
    cfg = tiny_config('mask_rcnn_internimage_demo_shapes.py', data)
    torch.manual_seed(0)
    models = {}
    for precision in ('fp32', 'bf16'):
        models[precision] = build_detector(cfg.model).eval()
        models[precision].init_weights() if precision == 'fp32' else models[precision].load_state_dict(
            models['fp32'].state_dict())
        apply_inference_precision(models[precision], precision)
    assert not hasattr(models['fp32'], 'amp_dtype')   # fp32: forward untouched
    sample = collate([build_dataset(cfg.data.test)[0]], samples_per_gpu=1)
    features = {}
    last_layers = {}
    bf16_model = models['bf16']
    for name in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg',
                 'roi_head.mask_head.conv_logits'):
        bf16_model.get_submodule(name).register_forward_hook(
            lambda module, args, out, name=name: last_layers.setdefault(name, set()).add(out.dtype))
    bf16_model.roi_head.bbox_head.shared_fcs[0].register_forward_hook(
        lambda module, args, out: last_layers.setdefault('shared_fcs.0', set()).add(out.dtype))
    for precision, model in models.items():
        seen.clear()
        model.backbone.register_forward_hook(lambda module, args, out, p=precision: features.__setitem__(p, out))
        with torch.no_grad():
            bbox_result, _ = model(return_loss=False, rescale=True, img=[sample['img'][0]],
                                   img_metas=[sample['img_metas'][0].data[0]])[0]
        assert all(boxes.dtype == np.float32 and np.isfinite(boxes).all() for boxes in bbox_result)
    assert seen['dcnv3_forward'] == {torch.bfloat16}
    assert seen['nms'] == {torch.float32}
    assert seen['roi_align_forward'] == {torch.float32}
    assert last_layers.pop('shared_fcs.0') == {torch.bfloat16}
    assert last_layers and all(dtypes == {torch.float32} for dtypes in last_layers.values()), last_layers
    for ours, reference in zip(features['bf16'], features['fp32']):
        assert ours.dtype == torch.bfloat16
        assert (ours.float() - reference).norm() / reference.norm() < 0.03


def test_unknown_inference_precision_is_one_line_error():
    from mmdet_custom.apis.amp import apply_inference_precision
    with pytest.raises(UserError, match=r"^--precision: must be one of fp32, bf16, got 'fp16'$"):
        apply_inference_precision(torch.nn.Linear(1, 1), 'fp16')
