"""DINO through deploy.py: a tiny DINO-InternImage (the demo config's architecture, random weights, 256 px) exported
with the ONNX Runtime deploy configs, run in a stock ONNX Runtime session and checked against mmdet's own PyTorch
inference on the same weights; the TensorRT deploy config up to its ONNX file and dynamic axes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('mmdeploy')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

REPO = Path(__file__).resolve().parents[2]
DETECTION_CONFIGS = REPO / 'deploy' / 'configs' / 'mmdet' / 'detection'
ORT_STATIC = DETECTION_CONFIGS / 'detection_onnxruntime_static.py'
ORT_DYNAMIC = DETECTION_CONFIGS / 'detection_onnxruntime_dynamic.py'
TRT_DYNAMIC = DETECTION_CONFIGS / 'detection_tensorrt_dynamic-320x320-1344x1344.py'
DEMO_DINO = REPO / 'configs' / 'demo' / 'dino_internimage_demo_shapes.py'
TEST_SCALE = (256, 256)
MAX_DETECTIONS = 20
# One GridSample per DCNv3 layer (demo backbone depths 2+2+4+2) and per level of every deformable attention
# (2 encoder + 3 decoder layers, 4 levels).
GRID_SAMPLES = (2 + 2 + 4 + 2) + (2 + 3) * 4


def _write_model_config(path: Path) -> Path:
    """The demo DINO at TEST_SCALE, no pre-trained backbone (random weights, written below)."""
    path.write_text(f'''
_base_ = [{str(DEMO_DINO)!r}]
model = dict(backbone=dict(init_cfg=None), test_cfg=dict(max_per_img={MAX_DETECTIONS}))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale={TEST_SCALE!r}, flip=False,
         transforms=[dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                     dict(type='Normalize', **img_norm_cfg), dict(type='Pad', size_divisor=32),
                     dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])
]
data = dict(val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
''')
    return path


def _write_random_checkpoint(model_cfg: Path, path: Path) -> Path:
    """Random weights with decisive class scores (spread classifier weights), so that the top-k orders of the
    encoder proposals and of the detections are not decided by float rounding."""
    import mmcv
    import torch
    from mmdet.models import build_detector

    import mmdet_custom  # noqa: F401

    torch.manual_seed(0)
    model = build_detector(mmcv.Config.fromfile(str(model_cfg)).model)
    model.init_weights()
    with torch.no_grad():
        for branch in model.bbox_head.cls_branches:
            branch.weight.normal_(0, 0.5)
    torch.save({'state_dict': model.state_dict(), 'meta': {'CLASSES': ('square', 'circle', 'triangle', 'star')}},
               path)
    return path


def _images(directory: Path) -> dict[str, Path]:
    """Two crops of the demo image whose test-scale sizes are multiples of 32 (no padding): 256x256 and 192x256."""
    import mmcv
    image = mmcv.imread(str(REPO / 'deploy' / 'demo.jpg'))
    paths = {'square': directory / 'square.jpg', 'landscape': directory / 'landscape.jpg'}
    mmcv.imwrite(image[50:450, 50:450], str(paths['square']))
    mmcv.imwrite(image[100:400, 50:450], str(paths['landscape']))
    return paths


@pytest.fixture(scope='module')
def dino(kit, tmp_path_factory):
    directory = tmp_path_factory.mktemp('dino_export')
    model_cfg = _write_model_config(directory / 'dino_internimage_tiny_test.py')
    return dict(directory=directory, model_cfg=model_cfg,
                checkpoint=_write_random_checkpoint(model_cfg, directory / 'random.pth'),
                images=_images(directory))


def _deploy(kit, dino, deploy_cfg: Path, name: str, image: str = 'square'):
    work_dir = dino['directory'] / name
    result = kit.run_deploy(str(deploy_cfg), str(dino['model_cfg']), str(dino['checkpoint']),
                            str(dino['images'][image]), '--work-dir', str(work_dir), '--device', 'cpu')
    return result, work_dir


def _pytorch(dino, image: Path):
    """mmdet's own inference (no mmdeploy rewrite active): the pre-processed input and, per image, (dets, labels)
    in input pixels."""
    import torch
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import load_config

    deploy_cfg, model_cfg = load_config(str(ORT_DYNAMIC), str(dino['model_cfg']))
    task_processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    model = task_processor.init_pytorch_model(str(dino['checkpoint']))
    data, model_inputs = task_processor.create_input(str(image), None)
    img_metas = data['img_metas'][0]
    assert img_metas[0]['img_shape'][:2] == img_metas[0]['pad_shape'][:2], 'test image must need no padding'
    with torch.no_grad():
        img_metas[0]['batch_input_shape'] = tuple(model_inputs[0].shape[-2:])
        dets, labels = model.bbox_head.simple_test(model.extract_feat(model_inputs[0]), img_metas, rescale=False)[0]
    return model_inputs[0].numpy(), dets.numpy(), labels.numpy()


def _assert_same_detections(ort_dets, ort_labels, torch_dets, torch_labels) -> None:
    """Same detections: scores (sorted) within 2e-3, and every ONNX Runtime detection pairs with its own PyTorch
    detection of the same label, score within 2e-3 and box within 0.5 px. Pairing, rather than comparing row by
    row, lets near-equal scores come out in either order."""
    assert ort_dets.shape == torch_dets.shape and ort_labels.shape == torch_labels.shape
    np.testing.assert_allclose(np.sort(ort_dets[:, 4]), np.sort(torch_dets[:, 4]), atol=2e-3)
    unused = list(range(len(torch_dets)))
    for det, label in zip(ort_dets, ort_labels):
        pairs = [j for j in unused if torch_labels[j] == label and abs(torch_dets[j, 4] - det[4]) <= 2e-3
                 and np.abs(torch_dets[j, :4] - det[:4]).max() <= 0.5]
        assert pairs, f'no PyTorch detection like {det} (label {label})'
        unused.remove(pairs[0])


def _check_against_pytorch(onnx_file: Path, dino, image: Path) -> None:
    image_tensor, torch_dets, torch_labels = _pytorch(dino, image)
    session = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])   # stock: no custom ops
    ort_dets, ort_labels = session.run(['dets', 'labels'], {'input': image_tensor})
    assert ort_dets.shape == (1, MAX_DETECTIONS, 5) and torch_dets.shape == (MAX_DETECTIONS, 5)
    assert torch_dets[:, 4].max() - torch_dets[:, 4].min() > 0.05, 'scores too close to compare orders'
    _assert_same_detections(ort_dets[0], ort_labels[0], torch_dets, torch_labels)


def _standard_graph(onnx_file: Path):
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)
    custom = sorted({f'{n.domain}::{n.op_type}' for n in model.graph.node if n.domain not in ('', 'ai.onnx')})
    assert custom == [], custom
    assert [n.op_type for n in model.graph.node].count('GridSample') == GRID_SAMPLES
    return model


def _named_axes(model) -> dict[str, dict[int, str]]:
    return {value.name: {index: d.dim_param for index, d in enumerate(value.type.tensor_type.shape.dim)
                         if d.dim_param}
            for value in list(model.graph.input) + list(model.graph.output)}


@pytest.fixture(scope='module')
def dynamic_export(kit, dino):
    result, work_dir = _deploy(kit, dino, ORT_DYNAMIC, 'ort_dynamic')
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


@pytest.mark.slow
def test_dynamic_export_is_standard_and_matches_pytorch_at_other_sizes(dino, dynamic_export):
    model = _standard_graph(dynamic_export / 'end2end.onnx')
    assert [value.name for value in model.graph.output] == ['dets', 'labels']
    assert _named_axes(model)['input'] == {0: 'batch', 2: 'height', 3: 'width'}
    assert (dynamic_export / 'output_onnxruntime.jpg').is_file() and (dynamic_export / 'output_pytorch.jpg').is_file()
    _check_against_pytorch(dynamic_export / 'end2end.onnx', dino, dino['images']['square'])      # the export size
    _check_against_pytorch(dynamic_export / 'end2end.onnx', dino, dino['images']['landscape'])   # another size


@pytest.mark.slow
def test_static_export_is_standard_and_matches_pytorch(kit, dino):
    result, work_dir = _deploy(kit, dino, ORT_STATIC, 'ort_static', image='landscape')
    assert result.returncode == 0, result.stderr[-3000:]
    model = _standard_graph(work_dir / 'end2end.onnx')
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 192, 256]
    _check_against_pytorch(work_dir / 'end2end.onnx', dino, dino['images']['landscape'])


@pytest.mark.slow
def test_tensorrt_config_writes_onnx_with_its_dynamic_axes(kit, dino):
    result, work_dir = _deploy(kit, dino, TRT_DYNAMIC, 'trt')
    if result.returncode == 0:
        pytest.skip('TensorRT is installed here: the engine was built (this test covers the CPU-only case)')
    lines = kit.error_lines(result.stderr)
    assert len(lines) == 1 and 'tensorrt' in lines[0] and 'not installed' in lines[0], result.stderr[-3000:]
    model = onnx.load(str(work_dir / 'end2end.onnx'))
    onnx.checker.check_model(model)
    axes = _named_axes(model)
    assert axes['input'] == {0: 'batch', 2: 'height', 3: 'width'} and axes['labels'] == {0: 'batch', 1: 'num_dets'}
    # dets: the declared axes, plus the exporter's name for its last axis (5, not inferred through the concat)
    assert {index: axes['dets'].get(index) for index in (0, 1)} == {0: 'batch', 1: 'num_dets'}
    assert [n.op_type for n in model.graph.node].count('GridSample') == GRID_SAMPLES
    # For TensorRT, mmdeploy rewrites GroupNorm (the neck's) into its own TRTInstanceNormalization plugin, as for the
    # R-CNN configs; the deformable attention and DCNv3 need no plugin.
    custom_ops = {n.op_type for n in model.graph.node if n.domain not in ('', 'ai.onnx')}
    assert custom_ops <= {'TRTInstanceNormalization'}, custom_ops


def test_tensorrt_detection_config_values():
    from mmdeploy.utils import get_backend, get_backend_config, get_ir_config, load_config
    deploy_cfg = load_config(str(TRT_DYNAMIC))[0]
    assert get_backend(deploy_cfg).value == 'tensorrt'
    assert get_ir_config(deploy_cfg)['output_names'] == ['dets', 'labels']
    assert get_backend_config(deploy_cfg)['model_inputs'][0]['input_shapes']['input'] == dict(
        min_shape=[1, 3, 320, 320], opt_shape=[1, 3, 800, 1344], max_shape=[1, 3, 1344, 1344])


def test_cb_dino_exports_in_process_and_matches_pytorch(mmdeploy_stack, tmp_path):
    """CB-DINO (composite backbone, CB head) through the same rewriters: mmdeploy's export in this process on a
    tiny model, checked at a second input size against mmdet's inference."""
    import copy

    import torch
    from mmcv import Config
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import get_dynamic_axes, load_config
    from mmdet.models import build_detector

    from mmdet_custom.deploy import apply_export_rewriters
    from tests.models.test_dino_cb import tiny_cb_dino_cfg

    apply_export_rewriters()
    torch.manual_seed(0)
    model = build_detector(Config(dict(model=tiny_cb_dino_cfg())).model)
    model.init_weights()
    with torch.no_grad():
        for branch in model.bbox_head.cls_branches:
            branch.weight.normal_(0, 0.5)
    model.eval()
    deploy_cfg = load_config(str(ORT_DYNAMIC))[0]

    def metas(height, width):
        return [dict(img_shape=(height, width, 3), ori_shape=(height, width, 3), pad_shape=(height, width, 3),
                     batch_input_shape=(height, width), scale_factor=np.ones(4, np.float32), flip=False)]

    path = tmp_path / 'cb_dino.onnx'
    names = ['input', 'dets', 'labels']
    export(model, torch.randn(1, 3, 96, 128), str(path.with_suffix('')), backend='onnxruntime',
           input_metas=dict(img_metas=[metas(96, 128)]), context_info=dict(deploy_cfg=deploy_cfg),
           input_names=names[:1], output_names=names[1:], opset_version=16,
           dynamic_axes=get_dynamic_axes(deploy_cfg, names), keep_initializers_as_inputs=False)
    assert not [n for n in onnx.load(str(path)).graph.node if n.domain not in ('', 'ai.onnx')]
    # Another size and aspect (not 64 px wide or less: a level one pixel wide is where ONNX Runtime's GridSample
    # and PyTorch's were seen to part, an input far below any DINO config's scale).
    image = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        dets, labels = model.bbox_head.simple_test(model.extract_feat(image), copy.deepcopy(metas(128, 96)))[0]
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    ort_dets, ort_labels = session.run(['dets', 'labels'], {'input': image.numpy()})
    _assert_same_detections(ort_dets[0], ort_labels[0], dets.numpy(), labels.numpy())
