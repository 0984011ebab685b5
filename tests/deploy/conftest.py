"""Shared pieces of the export tests: a Mask R-CNN InternImage model config at a small test scale, its checkpoint
with random weights, and a runner for ``deploy.py``."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONFIGS = REPO / 'deploy' / 'configs' / 'mmdet'
DEMO_IMAGE = REPO / 'deploy' / 'demo.jpg'
REPO_MODEL_CONFIG = REPO / 'configs' / 'coco' / 'mask_rcnn_internimage_t_fpn_1x_coco.py'
TEST_SCALE = (256, 256)    # small inputs: the whole file must stay fast on 2 cores
SCORE_THRESHOLD = 0.05     # PyTorch test_cfg and deploy post_processing use the same value
MAX_DETECTIONS = 20        # few detections: cheap mask pasting and drawing
INTERNIMAGE_T = dict(channels=64, depths=[4, 4, 18, 4], groups=[4, 8, 16, 32])


def _mmdet_base(*parts: str) -> str:
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', '_base_', *parts)


def write_model_config(path: Path, depths: list[int] | None = None) -> Path:
    """Mask R-CNN with the InternImage-T backbone (docs/checkpoints.md, backbone variants), test pipeline at TEST_SCALE.

    Inherits the repository's config when it exists, else mmdet's own Mask R-CNN base with the backbone swapped.
    """
    if REPO_MODEL_CONFIG.is_file():
        bases = [str(REPO_MODEL_CONFIG)]
    else:
        bases = [_mmdet_base('models', 'mask_rcnn_r50_fpn.py'), _mmdet_base('datasets', 'coco_instance.py')]
    depths = depths or INTERNIMAGE_T['depths']
    path.write_text(f'''
_base_ = {bases!r}
model = dict(
    backbone=dict(
        _delete_=True, type='InternImage', core_op='DCNv3', channels={INTERNIMAGE_T['channels']},
        depths={depths!r}, groups={INTERNIMAGE_T['groups']!r}, mlp_ratio=4., drop_path_rate=0.2, norm_layer='LN',
        layer_scale=1.0, offset_scale=1.0, post_norm=False, with_cp=False, out_indices=(0, 1, 2, 3),
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512]),
    test_cfg=dict(rcnn=dict(score_thr={SCORE_THRESHOLD}, nms=dict(type='nms', iou_threshold=0.5),
                            max_per_img={MAX_DETECTIONS})))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale={TEST_SCALE!r}, flip=False,
         transforms=[
             dict(type='Resize', keep_ratio=True),
             dict(type='RandomFlip'),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='Pad', size_divisor=32),
             dict(type='ImageToTensor', keys=['img']),
             dict(type='Collect', keys=['img']),
         ])
]
data = dict(val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
''')
    return path


def write_random_checkpoint(model_cfg_path: Path, checkpoint_path: Path, seed: int = 0) -> Path:
    """Random weights, made decisive: with mmdet's initialisation every class scores ~1/81 and every anchor ~0.5,
    so rankings are near-ties that float rounding can reorder. Larger classifier weights spread the scores, so
    detections exist above the threshold and their order is stable."""
    import mmcv
    import torch
    from mmdet.core import get_classes
    from mmdet.models import build_detector

    import mmdet_custom  # noqa: F401  (registers InternImage)

    torch.manual_seed(seed)
    cfg = mmcv.Config.fromfile(str(model_cfg_path))
    model = build_detector(cfg.model)
    model.init_weights()
    with torch.no_grad():
        model.rpn_head.rpn_cls.weight.normal_(0, 0.2)
        model.roi_head.bbox_head.fc_cls.weight.normal_(0, 0.2)
        if model.roi_head.with_mask:
            model.roi_head.mask_head.conv_logits.weight.normal_(0, 0.2)
    torch.save({'state_dict': model.state_dict(), 'meta': {'CLASSES': get_classes('coco')}}, checkpoint_path)
    return checkpoint_path


def perturb_dcnv3_offsets(checkpoint_path: Path, seed: int = 0) -> Path:
    """The checkpoint with random DCNv3 offset and mask projections (rewritten in place): DCNv3 initialises them to
    zero, which samples the regular grid; perturbed, the offsets are several pixels (some samples beyond the map's
    borders) and the masks uneven, so the deformable sampling is exercised."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    checkpoint = torch.load(checkpoint_path, map_location='cpu', weights_only=False)
    state_dict = checkpoint['state_dict']
    for name, tensor in state_dict.items():
        if '.dcn.offset.' in name:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * (0.3 if name.endswith('weight') else 2.0))
        elif '.dcn.mask.weight' in name:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
    torch.save(checkpoint, checkpoint_path)
    return checkpoint_path


def run_deploy(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / 'deploy.py'), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO), env=env)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith('deploy.py: error:')]


@pytest.fixture(scope='session')
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (test files cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(
        REPO=REPO, DEPLOY_CONFIGS=DEPLOY_CONFIGS, DEMO_IMAGE=DEMO_IMAGE, SCORE_THRESHOLD=SCORE_THRESHOLD,
        MAX_DETECTIONS=MAX_DETECTIONS,
        write_model_config=write_model_config, write_random_checkpoint=write_random_checkpoint,
        perturb_dcnv3_offsets=perturb_dcnv3_offsets,
        run_deploy=run_deploy, error_lines=error_lines)


@pytest.fixture(scope='session')
def mmdeploy_stack():
    """mmdeploy with the torch-2.x patches applied, in this process (skips only if mmdeploy is not installable)."""
    pytest.importorskip('mmdeploy')
    pytest.importorskip('onnxruntime')
    import mmcv_custom  # noqa: F401
    import mmdet_custom  # noqa: F401
    from mmdet_custom.deploy.mmdeploy_compat import apply_mmdeploy_patches
    apply_mmdeploy_patches()


def export_dcnv3(module, path: Path, dcnv3_onnx_op: str, backend: str = 'onnxruntime') -> Path:
    """The DCNv3 module exported with mmdeploy at opset 19 (dynamic N, H, W), its core as ``dcnv3_onnx_op`` chooses."""
    import torch
    from mmcv import Config
    from mmdeploy.apis.onnx import export
    deploy_cfg = Config(dict(backend_config=dict(type=backend), dcnv3_onnx_op=dcnv3_onnx_op,
                             onnx_config=dict(type='onnx', opset_version=19, input_names=['x'], output_names=['y'])))
    export(module, torch.randn(1, 12, 16, module.channels), str(path.with_suffix('')), backend=backend,
           input_names=['x'], output_names=['y'], context_info=dict(deploy_cfg=deploy_cfg), opset_version=19,
           dynamic_axes={'x': {0: 'n', 1: 'h', 2: 'w'}, 'y': {0: 'n', 1: 'h', 2: 'w'}},
           keep_initializers_as_inputs=False)
    return path


def float64_core(module, x):
    """The DCNv3 layer with its core in float64 on the PyTorch core (an independent reference of the sampling)."""
    import torch

    from ops_dcnv3.functions import dcnv3_core_pytorch
    with torch.no_grad():
        projected = module.input_proj(x)
        features = module.dw_conv(x.permute(0, 3, 1, 2))
        offset, mask = module.offset(features), torch.softmax(
            module.mask(features).view(*features.shape[:3], module.group, -1), -1).flatten(-2)
        core = dcnv3_core_pytorch(projected.double(), offset.double(), mask.double(), module.kernel_size,
                                  module.kernel_size, module.stride, module.stride, module.pad, module.pad,
                                  module.dilation, module.dilation, module.group, module.group_channels,
                                  module.offset_scale)
        return module.output_proj(core.float()).numpy()


@pytest.fixture(scope='module')
def deform_conv_dcnv3(mmdeploy_stack, tmp_path_factory) -> SimpleNamespace:
    """A DCNv3 module with perturbed offsets (non-zero, some samples beyond the borders) and uneven masks, exported
    as one ONNX DeformConv (opset 19, dynamic N, H, W): ``module``, ``path``; ``export(path, dcnv3_onnx_op,
    backend)`` exports it again, ``float64(x)`` is its float64-core reference."""
    import torch

    from mmdet_custom.deploy import apply_export_rewriters
    from ops_dcnv3.modules.dcnv3 import DCNv3
    apply_export_rewriters()
    torch.manual_seed(0)
    module = DCNv3(channels=32, group=4, offset_scale=1.5).eval()
    with torch.no_grad():   # the zero init samples the regular grid
        module.offset.weight.normal_(0, 0.3)
        module.offset.bias.normal_(0, 2.0)
        module.mask.weight.normal_(0, 0.3)
    path = export_dcnv3(module, tmp_path_factory.mktemp('deform_conv') / 'dcnv3.onnx', 'DeformConv')
    return SimpleNamespace(module=module, path=path,
                           export=lambda path, op, backend='onnxruntime': export_dcnv3(module, path, op, backend),
                           float64=lambda x: float64_core(module, x))
