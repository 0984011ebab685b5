"""train.py and test.py end to end on the tiny demo config: COCO metrics from pycocotools, valid COCO result files,
determinism, and --auto-resume after a SIGKILL."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


@pytest.fixture(scope='module')
def tested_run(trained_run, shapes_data, helpers, tmp_path_factory):
    """test.py on the trained run: metrics json, pickled results, COCO json results, pictures."""
    out_dir = tmp_path_factory.mktemp('tested')
    result = helpers.run_script([
        'test.py', helpers.demo_config, str(trained_run / 'latest.pth'), '--eval', 'bbox', 'segm',
        '--work-dir', str(out_dir), '--out', str(out_dir / 'results.pkl'), '--show-dir', str(out_dir / 'pictures'),
        '--eval-options', f'jsonfile_prefix={out_dir}/results', '--plot-dir', str(out_dir / 'plots'),
        '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])
    return out_dir, result


def test_training_logs_losses_lr_and_eta_and_writes_checkpoints(trained_run, helpers):
    entries = helpers.read_train_log(trained_run)
    assert [e['iter'] for e in entries] == [1, 2, 3, 4]
    for entry in entries:
        for key in ('loss', 'loss_rpn_cls', 'loss_cls', 'loss_mask', 'lr'):
            assert np.isfinite(entry[key]), key
    text_log = next(trained_run.glob('*.log')).read_text()
    assert 'eta:' in text_log and 'lr:' in text_log
    assert os.readlink(trained_run / 'latest.pth') == 'iter_4.pth'
    checkpoint = torch.load(trained_run / 'iter_4.pth', weights_only=False)
    assert checkpoint['meta']['CLASSES'] == ('circle', 'square', 'triangle', 'star')
    assert checkpoint['meta']['iter'] == 4


def test_eval_metrics_come_from_pycocotools(tested_run, shapes_data):
    out_dir, result = tested_run
    metric = json.loads(next(out_dir.glob('eval_*.json')).read_text())['metric']
    # Recompute both mAPs with pycocotools from the result files test.py wrote: they must match the report.
    ground_truth = COCO(str(shapes_data / 'annotations' / 'instances_val.json'))
    for iou_type in ('bbox', 'segm'):
        detections = ground_truth.loadRes(str(out_dir / f'results.{iou_type}.json'))
        evaluator = COCOeval(ground_truth, detections, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        assert metric[f'{iou_type}_mAP'] == pytest.approx(round(evaluator.stats[0], 3), abs=1e-3)
        assert metric[f'{iou_type}_mAP_50'] == pytest.approx(round(evaluator.stats[1], 3), abs=1e-3)
    assert "'bbox_mAP'" in result.stdout  # printed for the user too


def test_result_files_are_valid_coco_json(tested_run, shapes_data):
    out_dir, _ = tested_run
    val_ids = {image['id'] for image in json.loads(
        (shapes_data / 'annotations' / 'instances_val.json').read_text())['images']}
    for iou_type in ('bbox', 'segm'):
        detections = json.loads((out_dir / f'results.{iou_type}.json').read_text())
        assert detections, iou_type
        for detection in detections:
            assert detection['image_id'] in val_ids
            assert detection['category_id'] in (1, 2, 3, 4)
            assert 0.0 <= detection['score'] <= 1.0
            if iou_type == 'bbox':
                assert len(detection['bbox']) == 4 and detection['bbox'][2] >= 0 and detection['bbox'][3] >= 0
            else:
                assert set(detection['segmentation']) == {'size', 'counts'}
    assert len(list((out_dir / 'pictures').iterdir())) == len(val_ids)
    assert (out_dir / 'results.pkl').stat().st_size > 0


def test_deterministic_seed_gives_identical_losses(trained_run, shapes_data, helpers, tmp_path):
    helpers.run_script(['train.py', helpers.demo_config, '--work-dir', str(tmp_path), '--seed', '0',
                        '--deterministic', '--no-validate', '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])
    first = helpers.read_train_log(trained_run)
    second = helpers.read_train_log(tmp_path)
    loss_keys = [k for k in first[0] if k.startswith('loss')]
    assert len(loss_keys) >= 5
    assert [[e[k] for k in loss_keys] for e in first] == [[e[k] for k in loss_keys] for e in second]


def test_sigkill_then_auto_resume_completes_the_run(shapes_data, helpers, tmp_path):
    max_iters = 8
    options = helpers.tiny_cfg_options(shapes_data, max_iters=max_iters, checkpoint_interval=2)
    command = [sys.executable, 'train.py', helpers.demo_config, '--work-dir', str(tmp_path), '--seed', '0',
               '--no-validate', '--cfg-options', *options]
    process = subprocess.Popen(command, cwd=helpers.repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, 'OMP_NUM_THREADS': '1'})
    try:
        helpers.wait_for_file(tmp_path / 'iter_4.pth', process, timeout=240)
        process.send_signal(signal.SIGKILL)  # mid-run: iterations 5.. are lost
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (tmp_path / f'iter_{max_iters}.pth').exists()
    for checkpoint_file in tmp_path.glob('*.pth'):  # whatever was on disk at the kill is complete
        torch.load(checkpoint_file, weights_only=False)
    resumed_from = torch.load(tmp_path / 'latest.pth', weights_only=False)['meta']['iter']
    assert 4 <= resumed_from < max_iters

    helpers.run_script(['train.py', helpers.demo_config, '--work-dir', str(tmp_path), '--seed', '0',
                        '--no-validate', '--auto-resume', '--cfg-options', *options])
    final = torch.load(tmp_path / 'latest.pth', weights_only=False)
    assert final['meta']['iter'] == max_iters  # as many iterations as an uninterrupted run
    resumed_log = helpers.read_train_log(tmp_path)
    assert [e['iter'] for e in resumed_log] == list(range(resumed_from + 1, max_iters + 1))
    assert re.search(rf'resumed from epoch: \d+, iter {resumed_from}\b', sorted(tmp_path.glob('*.log'))[-1].read_text())


def test_test_writes_per_class_ap_and_precision_recall_plots(tested_run):
    out_dir, result = tested_run
    metric = json.loads(next(out_dir.glob('eval_*.json')).read_text())['metric']
    for kind in ('bbox', 'segm'):
        for name in (f'per_class_ap_{kind}.png', f'precision_recall_{kind}.png'):
            assert (out_dir / 'plots' / name).stat().st_size > 0, name
            assert f'wrote {out_dir / "plots" / name}' in result.stdout
        per_class = json.loads((out_dir / 'plots' / f'per_class_ap_{kind}.json').read_text())
        assert list(per_class) == ['circle', 'square', 'triangle', 'star']
        # the same COCO evaluation as mmdet's: the class mean is the reported mAP (rounded to 3 decimals there)
        values = [v for v in per_class.values() if v is not None]
        assert np.mean(values) == pytest.approx(metric[f'{kind}_mAP'], abs=1e-3)


def test_training_writes_its_loss_and_lr_curve(trained_run):
    assert (trained_run / 'loss_lr.png').stat().st_size > 0
    assert not (trained_run / 'val_map.png').exists()   # trained with --no-validate


def test_training_with_validation_writes_the_val_map_curve(shapes_data, helpers, tmp_path):
    helpers.run_script(['train.py', helpers.demo_config, '--work-dir', str(tmp_path), '--cfg-options',
                        *helpers.tiny_cfg_options(shapes_data, max_iters=2, checkpoint_interval=2),
                        'evaluation.interval=1'])
    from mmcv_custom.training_curves import read_json_log, val_steps
    train, val = read_json_log(str(next(tmp_path.glob('*.log.json'))))
    assert val_steps(train, val) == [1, 2]   # evaluated after iterations 1 and 2
    assert (tmp_path / 'val_map.png').stat().st_size > 0 and (tmp_path / 'loss_lr.png').stat().st_size > 0


def test_tensorboard_switch(shapes_data, helpers, tmp_path):
    pytest.importorskip('tensorboard')
    helpers.run_script(['train.py', helpers.demo_config, '--work-dir', str(tmp_path), '--no-validate',
                        '--cfg-options', *helpers.tiny_cfg_options(shapes_data, max_iters=2, checkpoint_interval=2),
                        'log_config.tensorboard=True'])
    events = list((tmp_path / 'tf_logs').glob('events.out.tfevents.*'))
    assert events and events[0].stat().st_size > 0
