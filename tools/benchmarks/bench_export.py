"""InternImage-T detectors at 800x1333 on the CPU: ONNX Runtime against PyTorch eager, measured in the same run.

``--model mask_rcnn`` (default): Mask R-CNN InternImage-T exported once with mmdeploy
(deploy/configs/mmdet/instance-seg/instance-seg_onnxruntime_dynamic.py, opset 16, DCNv3 as GridSample).
``--model dino``: DINO-4scale InternImage-T (configs/coco/dino_4scale_internimage_t_1x_coco_layer_wise_lr.py)
exported with deploy/configs/mmdet/detection/detection_onnxruntime_dynamic.py (its deformable attention as
GridSample too, through mmdet_custom.deploy's rewriters). Random weights. Every variant gets the same
pre-processed 800x1344 input (an 800x1333 image, padded to a multiple of 32) and keeps 100 detections (Mask R-CNN:
score threshold 0, so the mask head always runs on 100 RoIs, as a trained model's dense scenes do; DINO: the top
100 of its 900 queries):

  onnxruntime       a stock ONNX Runtime CPU session on end2end.onnx (graph optimisations on)
  pytorch_end2end   the same end-to-end computation in PyTorch eager (mmdeploy's rewritten heads, 28x28 masks;
                    DCNv3 on the compiled CPU kernel): the like-for-like comparison
  pytorch_mmdet     mmdet's own inference (``model(return_loss=False, rescale=True)``: masks pasted at image size),
                    what test.py runs (RoIAlign on the multi-threaded CPU kernel of ops_roialign where built)
  mmdet_mmcv_roialign  (Mask R-CNN, where ops_roialign is built) the same on mmcv's single-threaded RoIAlign
  mmdet_bf16        mmdet's inference with ``--precision bf16`` (mmdet_custom.apis.amp: bf16 autocast, float32 box
                    operations and last layers)
  mmdet_compiled / mmdet_bf16_compiled   the same with ``--compile`` (the backbone under torch.compile, inductor;
                    the compile time is printed; ``--no-compile`` leaves them out)
  openvino_fp32 / openvino_bf16 / openvino_int8   (with ``--dcnv3-op DeformConv`` where openvino is installed) the
                    same ONNX file in OpenVINO (mmdet_custom.deploy.openvino_runner, precision hint and threads set);
                    INT8: NNCF post-training quantization of it (where nncf is installed), calibrated on the input
  openvino_dcnv3op_fp32 / _bf16 / _int8   (likewise) the same detector exported again with
                    ``dcnv3_onnx_op='DCNv3'``: each DCNv3 core one mmdet_custom::DCNv3 node, which OpenVINO runs on
                    this project's compiled DCNv3 CPU kernel (mmdet_custom/deploy/dcnv3_openvino_op.py) instead of its
                    DeformableConvolution; the rest of the graph as in openvino_fp32 / _bf16 / _int8

Latency: median of interleaved repeats (the variants take turns, so a change in machine load hits all of them);
ratios are PyTorch time / ONNX Runtime time (> 1: ONNX Runtime is faster). Both use the same number of threads.

Efficiency: ``detector GFLOPs / latency`` divided by the GFLOP/s of a large float32 matmul, and of a bf16 one (AMX
CPUs run it several times faster), measured in the same process with the same threads (before and after the timed
runs; the better of the two). The detector's GFLOPs are
get_flops.py's count at the input size (forward_dummy: 1000 proposals and the masks of 100 RoIs for Mask R-CNN; for
DINO the deformable attention's sampling is not counted), which, like the original's tables, counts a multiply-add
as one FLOP, while the matmul counts 2 per multiply-add (its usual GFLOP/s): the ratio as the issue defines it.

``--dcnv3-op DeformConv`` exports DCNv3 as ONNX's DeformConv (opset 19) instead of GridSample (opset 16).
OMP_WAIT_POLICY=PASSIVE in the environment speeds up the openvino_dcnv3op variants (PyTorch's OpenMP threads,
started by the kernel inside OpenVINO, otherwise spin between calls, taking cores from OpenVINO's threads); the
header prints it.
``--only NAME ...`` measures only those variants (pytorch_mmdet, the baseline, always), e.g. ``--only openvino_fp32
openvino_dcnv3op_fp32`` on a busy machine.

usage: python tools/benchmarks/bench_export.py [--model mask_rcnn|dino] [--dcnv3-op GridSample|DeformConv]
                                               [--repeats 3] [--threads 2] [--size 800 1333] [--work-dir DIR]
                                               [--no-compile] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
import warnings

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

DEPLOY_CFG = osp.join(ROOT, 'deploy', 'configs', 'mmdet', 'instance-seg', 'instance-seg_onnxruntime_dynamic.py')
DINO_DEPLOY_CFG = osp.join(ROOT, 'deploy', 'configs', 'mmdet', 'detection', 'detection_onnxruntime_dynamic.py')
REPO_MODEL_CFG = osp.join(ROOT, 'configs', 'coco', 'mask_rcnn_internimage_t_fpn_1x_coco.py')
DINO_MODEL_CFG = osp.join(ROOT, 'configs', 'coco', 'dino_4scale_internimage_t_1x_coco_layer_wise_lr.py')
MAX_DETECTIONS = 100
MATMUL_SIZE = 2048
TEST_PIPELINE = '''
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=({width}, {height}), flip=False,
         transforms=[dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                     dict(type='Normalize', **img_norm_cfg), dict(type='Pad', size_divisor=32),
                     dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])
]
data = dict(test=dict(pipeline=test_pipeline))
'''


def write_configs(work_dir: str, height: int, width: int) -> tuple[str, str]:
    """Model config (the repository's Mask R-CNN InternImage-T, or mmdet's Mask R-CNN base with the InternImage-T
    backbone until that exists) and deploy config, both keeping every detection up to MAX_DETECTIONS."""
    import mmdet
    if osp.isfile(REPO_MODEL_CFG):
        bases = [REPO_MODEL_CFG]
    else:
        mim = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', '_base_')
        bases = [osp.join(mim, 'models', 'mask_rcnn_r50_fpn.py'), osp.join(mim, 'datasets', 'coco_instance.py')]
    model_cfg = osp.join(work_dir, 'mask_rcnn_internimage_t_bench.py')
    with open(model_cfg, 'w') as file:
        file.write(f'''
_base_ = {bases!r}
model = dict(
    backbone=dict(
        _delete_=True, type='InternImage', core_op='DCNv3', channels=64, depths=[4, 4, 18, 4],
        groups=[4, 8, 16, 32], mlp_ratio=4., drop_path_rate=0.2, norm_layer='LN', layer_scale=1.0,
        offset_scale=1.0, post_norm=False, with_cp=False, out_indices=(0, 1, 2, 3), init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512]),
    test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img={MAX_DETECTIONS})))
''' + TEST_PIPELINE.format(height=height, width=width))
    deploy_cfg = osp.join(work_dir, 'deploy_bench.py')
    with open(deploy_cfg, 'w') as file:
        file.write(f'_base_ = [{DEPLOY_CFG!r}]\n'
                   f'codebase_config = dict(post_processing=dict(score_threshold=0.0, keep_top_k={MAX_DETECTIONS}))\n')
    return model_cfg, deploy_cfg


def choose_dcnv3_op(work_dir: str, deploy_cfg: str, dcnv3_op: str) -> str:
    """The deploy config, with DCNv3 exported as ONNX DeformConv (opset 19) if asked."""
    if dcnv3_op == 'GridSample':
        return deploy_cfg
    path = osp.join(work_dir, 'deploy_bench_deformconv.py')
    with open(path, 'w') as file:
        file.write(f"_base_ = [{deploy_cfg!r}]\nonnx_config = dict(opset_version=19)\ndcnv3_onnx_op = 'DeformConv'\n")
    return path


def write_dino_configs(work_dir: str, height: int, width: int) -> tuple[str, str]:
    """The repository's DINO-T config with random weights (no pre-trained download), no activation checkpointing (a
    training memory saver), MAX_DETECTIONS detections; the ONNX Runtime dynamic detection deploy config."""
    model_cfg = osp.join(work_dir, 'dino_internimage_t_bench.py')
    with open(model_cfg, 'w') as file:
        file.write(f'''
_base_ = [{DINO_MODEL_CFG!r}]
model = dict(backbone=dict(with_cp=False, init_cfg=None), test_cfg=dict(max_per_img={MAX_DETECTIONS}))
''' + TEST_PIPELINE.format(height=height, width=width))
    return model_cfg, DINO_DEPLOY_CFG


def matmul_gflops(threads: int, size: int = MATMUL_SIZE, repeats: int = 5, dtype=None) -> float:
    """GFLOP/s (2 FLOPs per multiply-add) of a (size x size) @ (size x size) matmul in ``dtype`` (default float32):
    best of ``repeats``."""
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)   # warm-up
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def detector_gflops(model_cfg, height: int, width: int) -> float:
    """get_flops.py's count (a multiply-add is one FLOP) for a (3, height, width) input."""
    from mmdet_custom.apis.flops import count
    return count(model_cfg, height, width)['flops'] / 1e9


def machine_load() -> str:
    return ', '.join(f'{value:.2f}' for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', choices=('mask_rcnn', 'dino'), default='mask_rcnn')
    parser.add_argument('--dcnv3-op', choices=('GridSample', 'DeformConv'), default='GridSample',
                        help='ONNX operator for the DCNv3 core (DeformConv: opset 19)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1333), metavar=('HEIGHT', 'WIDTH'))
    parser.add_argument('--work-dir', default=None, help='keep the exported files here (default: a temp dir)')
    parser.add_argument('--no-compile', action='store_true', help='leave out the torch.compile variants')
    parser.add_argument('--only', nargs='+', default=None, metavar='NAME',
                        help='measure only these variants (pytorch_mmdet, the baseline, always)')
    args = parser.parse_args()
    os.environ.setdefault('OMP_NUM_THREADS', str(args.threads))

    import mmcv
    import numpy as np
    import onnxruntime as ort
    import torch

    import mmcv_custom  # noqa: F401
    import mmdet_custom  # noqa: F401
    from mmdet_custom.apis.amp import apply_inference_precision
    from mmdet_custom.apis.compile import compile_backbone
    from mmdet_custom.deploy import apply_export_patches
    from ops_roialign.mmcv_route import patch_mmcv_roi_align_cpu, roi_align_kernel_installed
    apply_export_patches()
    from mmdeploy.apis import build_task_processor
    from mmdeploy.apis.onnx import export
    from mmdeploy.core import RewriterContext, patch_model
    from mmdeploy.utils import IR, get_dynamic_axes, get_onnx_config, load_config
    from mmdet.core import get_classes
    from mmdet.models import build_detector

    from ops_dcnv3.functions import extension_available

    torch.set_num_threads(args.threads)
    warnings.simplefilter('ignore')
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='bench_export_')
    os.makedirs(work_dir, exist_ok=True)
    height, width = args.size
    write = write_dino_configs if args.model == 'dino' else write_configs
    model_cfg_path, deploy_cfg_path = write(work_dir, height, width)
    deploy_cfg_path = choose_dcnv3_op(work_dir, deploy_cfg_path, args.dcnv3_op)
    image_path = osp.join(work_dir, 'image.jpg')
    mmcv.imwrite(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8), image_path)
    matmul_before = matmul_gflops(args.threads)
    matmul_bf16_before = matmul_gflops(args.threads, dtype=torch.bfloat16)

    torch.manual_seed(0)
    deploy_cfg, model_cfg = load_config(deploy_cfg_path, model_cfg_path)
    checkpoint = osp.join(work_dir, 'random.pth')
    detector = build_detector(model_cfg.model)
    detector.init_weights()
    torch.save({'state_dict': detector.state_dict(), 'meta': {'CLASSES': get_classes('coco')}}, checkpoint)

    task_processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    model = task_processor.init_pytorch_model(checkpoint)
    # mmdet's inference in bf16 and compiled: other instances of the same weights (the options change the instance).
    extra_models = {'mmdet_bf16': ('bf16', False)}
    if not args.no_compile:
        extra_models.update(mmdet_compiled=('fp32', True), mmdet_bf16_compiled=('bf16', True))
    extra_models = {name: value for name, value in extra_models.items() if wanted(name, args)}
    mmdet_models = {'pytorch_mmdet': model}
    for name, (precision, compiled) in extra_models.items():
        mmdet_models[name] = compile_backbone(
            apply_inference_precision(task_processor.init_pytorch_model(checkpoint), precision), compiled)
    data, model_inputs = task_processor.create_input(image_path, None)
    image = model_inputs[0]
    img_metas = data['img_metas']

    onnx_file = osp.join(work_dir, 'end2end.onnx')
    onnx_cfg = get_onnx_config(deploy_cfg)

    def export_onnx(path, cfg):
        export(model, image, osp.splitext(path)[0], backend='onnxruntime', input_metas=dict(img_metas=img_metas),
               context_info=dict(deploy_cfg=cfg), input_names=onnx_cfg['input_names'],
               output_names=onnx_cfg['output_names'], opset_version=onnx_cfg['opset_version'],
               dynamic_axes=get_dynamic_axes(cfg, onnx_cfg['input_names'] + onnx_cfg['output_names']),
               keep_initializers_as_inputs=False)
        return path

    start = time.perf_counter()
    export_onnx(onnx_file, deploy_cfg)
    export_seconds = time.perf_counter() - start
    dcnv3op_file = None   # DCNv3 as mmdet_custom::DCNv3 nodes, for OpenVINO on the project's kernel
    if (args.dcnv3_op == 'DeformConv' and extension_available()
            and any(wanted(f'openvino_dcnv3op_{precision}', args) for precision in ('fp32', 'bf16', 'int8'))):
        dcnv3op_cfg = deploy_cfg.copy()
        dcnv3op_cfg.dcnv3_onnx_op = 'DCNv3'
        dcnv3op_file = export_onnx(osp.join(work_dir, 'end2end_dcnv3op.onnx'), dcnv3op_cfg)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_file, options, providers=['CPUExecutionProvider'])
    ort_input = {'input': image.numpy()}

    patched = patch_model(model, cfg=deploy_cfg, backend='onnxruntime', ir=IR.ONNX)
    mmdet_data = dict(img=[image], img_metas=[[meta for meta in img_metas[0]]])

    def run_onnxruntime():
        return session.run(None, ort_input)

    def run_pytorch_end2end():
        with RewriterContext(cfg=deploy_cfg, backend='onnxruntime', ir=IR.ONNX,
                             opset=onnx_cfg['opset_version']), torch.no_grad():
            return patched(image, img_metas=img_metas)

    def mmdet_runner(detector):
        def run():
            with torch.no_grad():
                return detector(return_loss=False, rescale=True, **mmdet_data)
        return run

    run_pytorch_mmdet = mmdet_runner(model)

    def mmdet_detections(result) -> int:
        boxes = result[0][0] if isinstance(result[0], tuple) else result[0]   # (bbox, segm) or bbox results
        return sum(len(per_class) for per_class in boxes)

    def run_pytorch_mmdet_mmcv_roi_align():   # the same, on mmcv's single-threaded CPU RoIAlign
        patch_mmcv_roi_align_cpu(enable=False)
        try:
            return run_pytorch_mmdet()
        finally:
            patch_mmcv_roi_align_cpu(enable=True)

    variants = dict(onnxruntime=run_onnxruntime, pytorch_end2end=run_pytorch_end2end,
                    pytorch_mmdet=run_pytorch_mmdet)
    if args.model == 'mask_rcnn' and roi_align_kernel_installed():
        variants['mmdet_mmcv_roialign'] = run_pytorch_mmdet_mmcv_roi_align
    for name in extra_models:
        variants[name] = mmdet_runner(mmdet_models[name])
    variants = {name: function for name, function in variants.items() if wanted(name, args)}
    openvino_note = add_openvino_variants(variants, onnx_file, dcnv3op_file, ort_input, args)
    # Kept detections (score > 0: mmdeploy's end-to-end NMS appends one all-zero padding row); warm-up runs (the
    # compiled variants compile here).
    detections, warm_up = {}, {}
    for name, function in variants.items():
        start = time.perf_counter()
        result = function()
        warm_up[name] = time.perf_counter() - start
        end2end = name in ('onnxruntime', 'pytorch_end2end') or name.startswith('openvino')
        detections[name] = int((result[0][..., 4] > 0).sum()) if end2end else mmdet_detections(result)
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, function in variants.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    matmul = max(matmul_before, matmul_gflops(args.threads))
    matmul_bf16 = max(matmul_bf16_before, matmul_gflops(args.threads, dtype=torch.bfloat16))
    gflops = detector_gflops(model_cfg, image.shape[2], image.shape[3])

    medians = {name: statistics.median(values) for name, values in times.items()}
    title = 'DINO-4scale InternImage-T' if args.model == 'dino' else 'Mask R-CNN InternImage-T'
    print(f'{title} (DCNv3 exported as {args.dcnv3_op}), input 1x3x{image.shape[2]}x{image.shape[3]} '
          f'(image {height}x{width}), '
          f'{args.threads} threads, {args.repeats} interleaved repeats, random weights; load average {machine_load()}; '
          f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "(unset)")}')
    print(f'torch {torch.__version__}, onnxruntime {ort.__version__}, DCNv3 compiled kernel in PyTorch: '
          f'{extension_available()}, multi-threaded CPU RoIAlign: {roi_align_kernel_installed()}; '
          f'ONNX export took {export_seconds:.1f} s')
    print(f'detector {gflops:.1f} GFLOPs (get_flops.py); {MATMUL_SIZE}^3 matmul: float32 {matmul:.1f} GFLOP/s, '
          f'bf16 {matmul_bf16:.1f} GFLOP/s; {openvino_note}')
    print('  efficiency = detector GFLOPs / latency / matmul GFLOP/s (float32 matmul | bf16 matmul); '
          'speed-up = pytorch_mmdet latency / latency')
    for name, median in medians.items():
        compile_note = (f'; first run {warm_up[name]:.1f} s (compiles: +{warm_up[name] - median:.0f} s)'
                        if name.endswith('compiled') else '')
        print(f'  {name:20s} median {median:7.3f} s  speed-up {medians["pytorch_mmdet"] / median:5.2f}x  '
              f'efficiency {gflops / median / matmul:.3f} | {gflops / median / matmul_bf16:.3f}   '
              f'(runs: {", ".join(f"{t:.3f}" for t in times[name])}; {detections[name]} detections{compile_note})')
    for name in ('pytorch_end2end', 'pytorch_mmdet'):
        if name in medians and 'onnxruntime' in medians:
            print(f'  speed-up of onnxruntime over {name}: {medians[name] / medians["onnxruntime"]:.2f}x')
    for precision in ('fp32', 'bf16', 'int8'):
        reference, project = f'openvino_{precision}', f'openvino_dcnv3op_{precision}'
        if reference in medians and project in medians:
            print(f'  OpenVINO {precision}, DCNv3 on the project kernel instead of DeformableConvolution: '
                  f'{medians[reference] / medians[project]:.2f}x')
    if 'mmdet_mmcv_roialign' in medians:
        print(f'  multi-threaded RoIAlign lever: mmdet inference {medians["mmdet_mmcv_roialign"]:.3f} s -> '
              f'{medians["pytorch_mmdet"]:.3f} s ({medians["mmdet_mmcv_roialign"] / medians["pytorch_mmdet"]:.2f}x)')


def wanted(name: str, args) -> bool:
    """The variant is measured (``--only``; the baseline always)."""
    return args.only is None or name == 'pytorch_mmdet' or name in args.only


def add_openvino_variants(variants: dict, onnx_file: str, dcnv3op_file: str | None, ort_input: dict, args) -> str:
    """OpenVINO fp32/bf16 (and INT8 through NNCF where installed) on the exported file, added to ``variants`` where
    openvino is installed and DCNv3 was exported as DeformConv; the same on ``dcnv3op_file`` (DCNv3 on the
    project's kernel) where given; returns a note for the header."""
    import importlib.util
    if importlib.util.find_spec('openvino') is None:
        return 'OpenVINO: not installed (pip install -r requirements/openvino.txt)'
    if args.dcnv3_op != 'DeformConv':
        return 'OpenVINO: left out (it needs --dcnv3-op DeformConv)'
    import openvino as ov

    from mmdet_custom.deploy.openvino_runner import compile_model, read_model
    model = read_model(onnx_file)
    inputs = [ort_input['input']]
    models = {'openvino_fp32': (model, 'fp32'), 'openvino_bf16': (model, 'bf16')}
    if dcnv3op_file is not None:
        dcnv3op_model = read_model(dcnv3op_file)
        models.update(openvino_dcnv3op_fp32=(dcnv3op_model, 'fp32'), openvino_dcnv3op_bf16=(dcnv3op_model, 'bf16'))
    note = f'OpenVINO {ov.__version__}'
    int8 = {'openvino_int8': onnx_file, 'openvino_dcnv3op_int8': dcnv3op_file}
    int8 = {name: path for name, path in int8.items() if path is not None and wanted(name, args)}
    if not int8:
        note += ', INT8 left out (--only)'
    elif importlib.util.find_spec('nncf') is not None:
        import nncf
        for name, path in int8.items():
            start = time.perf_counter()
            quantized = nncf.quantize(read_model(path), nncf.Dataset(inputs), subset_size=1)
            models[name] = (quantized, 'fp32')   # INT8 weights/activations; float32 elsewhere
            note += f', {name}: NNCF {nncf.__version__} (calibrated on the input, {time.perf_counter() - start:.0f} s)'
    else:
        note += ', INT8 left out (nncf not installed)'
    for name, (ov_model, precision) in models.items():
        if not wanted(name, args):
            continue
        request = compile_model(ov_model, precision, args.threads).create_infer_request()
        variants[name] = lambda request=request: list(request.infer(inputs).values())
    return note


if __name__ == '__main__':
    main()
