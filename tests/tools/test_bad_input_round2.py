"""Bad input, second round: configs that raise, malformed --cfg-options, values mmcv/mmdet check only deep inside a
run, annotation records, the other entry points, the launchers, resuming, and a diverging run. Each case ends with
one line naming the file, field or argument and a non-zero status (or works), and no traceback.

The entry points run in-process (``helpers.run_in_process``: their ``__main__`` path), the launchers as commands.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch


def train_argv(helpers, data_dir, work_dir, *extra, validate: bool = False) -> list[str]:
    return [helpers.demo_config, '--work-dir', str(work_dir), *([] if validate else ['--no-validate']),
            '--cfg-options', *helpers.tiny_cfg_options(data_dir, max_iters=2), *extra]


def argv_of_test(helpers, data_dir, checkpoint, *extra, options=()) -> list[str]:
    return [helpers.demo_config, str(checkpoint), *extra, '--cfg-options', *helpers.tiny_cfg_options(data_dir),
            *options]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ': error: ' in line]


def assert_one_line(status: int, stderr: str, program: str, expected: str, status_expected: int = 1) -> None:
    """Exit status 1 (2: argparse), no traceback, and exactly one error line: ``<program>: error: <expected>``
    (``expected`` ending in '...' is a prefix)."""
    assert status == status_expected, stderr[-3000:]
    assert 'Traceback' not in stderr and 'Exception ignored' not in stderr, stderr[-3000:]
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    if expected.endswith('...'):
        assert lines[0].startswith(f'{program}: error: {expected[:-3]}'), lines[0]
    else:
        assert lines[0] == f'{program}: error: {expected}'


@pytest.fixture()
def data_copy(shapes_data, tmp_path):
    copy = tmp_path / 'data'
    shutil.copytree(shapes_data, copy)
    return copy


def edit_annotations(data_dir: Path, split: str, edit) -> Path:
    path = data_dir / 'annotations' / f'instances_{split}.json'
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))
    return path


# ---------------------------------------------------------------------------------------------------------------
# train.py: --cfg-options items and values checked before anything is built
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('extra, expected', [
    (['foo'], '--cfg-options foo: expected KEY=VALUE'),
    (['data.train.pipeline.2.img_scale=(64,64'],
     '--cfg-options data.train.pipeline.2.img_scale=(64,64: unbalanced brackets in the value'),
    (['data.samples_per_gpu=0'], 'config field data.samples_per_gpu is 0: expected an integer >= 1'),
    (['data.workers_per_gpu=-1'], 'config field data.workers_per_gpu is -1: expected an integer >= 0'),
    (['optimizer.lr=-0.1'], 'config field optimizer: AdamW rejects it: Invalid learning rate: -0.1'),
    (['optimizer.weight_decy=0.05'], 'config field optimizer.weight_decy: not an argument of AdamW (did you mean '
                                     'weight_decay? ...'),
    (['lr_config.policy=cosin'], "config field lr_config.policy: 'cosin' is not a known policy (..."),
    (['checkpoint_config.interval=0'], 'config field checkpoint_config.interval is 0: expected a positive number of '
                                       'epochs/iterations, or -1 (save only at the end)'),
    (['model.roi_head.bbox_head.num_classes=3'], 'config field model.roi_head.bbox_head.num_classes is 3, but '
                                                 'data.train.classes has 4 classes: set both to the same number'),
    (['data.train.classes=(circle,sqare,triangle,star)'], "data.train.classes: 'sqare' is not a category of ..."),
    (['data.train.ann_file='], 'data.train.ann_file is empty (set data.train.ann_file in '
                               'configs/demo/mask_rcnn_internimage_demo_shapes_scratch.py, or --cfg-options '
                               'data.train.ann_file=PATH)'),
    (['nonfinite_loss=halt'], "config field nonfinite_loss: 'halt': expected one of stop, skip, off"),
])
def test_train_values(helpers, shapes_data, tmp_path, capsys, extra, expected):
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path, *extra))
    assert_one_line(status, capsys.readouterr().err, 'train.py', expected)


@pytest.mark.parametrize('extra, expected', [
    (['evaluation.interval=0'], 'config field evaluation.interval is 0: expected a positive number of '
                                'epochs/iterations (or train with --no-validate)'),
    (['evaluation.metric=[bbox,segn]'], "config field evaluation.metric segn: not a metric of CocoDataset "
                                        "(data.val.type); did you mean 'segm'? choose from bbox, segm, proposal, "
                                        "proposal_fast"),
])
def test_train_validation_values(helpers, shapes_data, tmp_path, capsys, extra, expected):
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path, *extra, validate=True))
    assert_one_line(status, capsys.readouterr().err, 'train.py', expected)


# ---------------------------------------------------------------------------------------------------------------
# Configs that fail while they run, or lack what the entry point needs (every entry point, one loader)
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture()
def raising_config(helpers, tmp_path) -> Path:
    config = tmp_path / 'my_config.py'
    config.write_text(f"_base_ = ['{helpers.repo / helpers.demo_config}']\n\nmax_iters = 1 / 0\n")
    return config


def test_config_that_raises_in_every_entry_point(helpers, shapes_data, trained_run, raising_config, tmp_path,
                                                  capsys):
    expected = f'config file {raising_config}, line 3: ZeroDivisionError: division by zero'
    checkpoint = str(trained_run / 'latest.pth')
    image = str(shapes_data / 'val' / 'val_00001.jpg')
    runs = [('train', [str(raising_config), '--work-dir', str(tmp_path / 'w')]),
            ('test', [str(raising_config), checkpoint, '--eval', 'bbox']),
            ('image_demo', [image, str(raising_config), checkpoint, '--device', 'cpu', '--out', str(tmp_path)]),
            ('get_flops', [str(raising_config)])]
    for name, argv in runs:
        status = helpers.run_in_process(name, argv)
        assert_one_line(status, capsys.readouterr().err, f'{name}.py', expected)


def test_config_without_model_or_data(helpers, trained_run, tmp_path, capsys):
    config = tmp_path / 'no_model.py'
    config.write_text("optimizer = dict(type='SGD', lr=0.01)\n")
    status = helpers.run_in_process('get_flops', [str(config)])
    assert_one_line(status, capsys.readouterr().err, 'get_flops.py',
                    f'config file {config} has no model (set it there or in a _base_ file)')
    config.write_text(f"_base_ = ['{helpers.repo / helpers.demo_config}']\ndata = dict(_delete_=True, "
                      "samples_per_gpu=2)\n")
    status = helpers.run_in_process('test', [str(config), str(trained_run / 'latest.pth'), '--eval', 'bbox'])
    assert_one_line(status, capsys.readouterr().err, 'test.py',
                    f'config file {config} has no data.test (set it there or in a _base_ file)')


# ---------------------------------------------------------------------------------------------------------------
# Annotation records and images
# ---------------------------------------------------------------------------------------------------------------

def test_annotation_records(helpers, data_copy, tmp_path, capsys):
    train_file = edit_annotations(data_copy, 'train', lambda c: c['annotations'][2].pop('area'))
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path))
    assert_one_line(status, capsys.readouterr().err, 'train.py',
                    f'data.train: annotation file {train_file}: annotations[2] (id 3) has no "area"')

    edit_annotations(data_copy, 'train', lambda c: c['annotations'][2].update(area=10))
    edit_annotations(data_copy, 'train', lambda c: c['annotations'][1].update(bbox=[1, 2, 3]))
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path))
    assert_one_line(status, capsys.readouterr().err, 'train.py',
                    f'data.train: annotation file {train_file}: annotations[1] (id 2): "bbox" must be 4 numbers '
                    '[x, y, width, height], got [1, 2, 3]')



def test_annotation_records_in_test_and_validation(helpers, data_copy, trained_run, tmp_path, capsys):
    val_file = edit_annotations(data_copy, 'val', lambda c: c['annotations'][0].pop('iscrowd'))
    status = helpers.run_in_process('test', argv_of_test(helpers, data_copy, trained_run / 'latest.pth', '--eval',
                                                      'bbox'))
    assert_one_line(status, capsys.readouterr().err, 'test.py',
                    f'data.test: annotation file {val_file}: annotations[0] (id 1) has no "iscrowd"')
    edit_annotations(data_copy, 'val', lambda c: c['annotations'][0].update(iscrowd=0))
    edit_annotations(data_copy, 'val', lambda c: c['annotations'][1].pop('segmentation'))
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path, validate=True))
    assert_one_line(status, capsys.readouterr().err, 'train.py',
                    f'data.val: annotation file {val_file}: annotations[1] (id 2) has no "segmentation"')


def test_missing_validation_image_is_found_before_training(helpers, data_copy, tmp_path, capsys):
    (data_copy / 'val' / 'val_00003.jpg').unlink()
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path, validate=True))
    assert_one_line(status, capsys.readouterr().err, 'train.py',
                    f'data.val: image file {data_copy}/val/val_00003.jpg referenced by '
                    f'{data_copy}/annotations/instances_val.json does not exist')


def test_all_boxes_degenerate(helpers, data_copy, tmp_path, capsys):
    def degenerate(content):
        for ann in content['annotations']:
            ann['bbox'][2] = 0.5
    train_file = edit_annotations(data_copy, 'train', degenerate)
    count = len(json.loads(train_file.read_text())['annotations'])
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path))
    assert_one_line(status, capsys.readouterr().err, 'train.py',
                    f'data.train: annotation file {train_file}: all {count} boxes are degenerate (width or height < '
                    '1 pixel, or area <= 0): mmdet drops them and would train on empty images')


# ---------------------------------------------------------------------------------------------------------------
# test.py, image_demo.py, get_flops.py, deploy.py
# ---------------------------------------------------------------------------------------------------------------

def test_eval_options_and_format_only_before_inference(helpers, shapes_data, trained_run, tmp_path, capsys):
    checkpoint = trained_run / 'latest.pth'
    status = helpers.run_in_process('test', argv_of_test(helpers, shapes_data, checkpoint, '--eval', 'bbox',
                                                      '--eval-options', 'foo=1'))
    assert_one_line(status, capsys.readouterr().err, 'test.py',
                    '--eval-options foo: not an option of CocoDataset.evaluate (options: jsonfile_prefix, classwise, '
                    'proposal_nums, iou_thrs, metric_items)')
    status = helpers.run_in_process('test', argv_of_test(helpers, shapes_data, checkpoint, '--format-only'))
    assert_one_line(status, capsys.readouterr().err, 'test.py', '--format-only: pass --eval-options '
                    'jsonfile_prefix=PATH/NAME to say where the result files go (without it mmdet writes them into '
                    'a temporary folder and deletes them)')
    status = helpers.run_in_process('test', argv_of_test(helpers, shapes_data, checkpoint, '--format-only',
                                                      '--eval-options', 'jsonfile_prefix=/proc/x/results'))
    assert_one_line(status, capsys.readouterr().err, 'test.py',
                    '--eval-options jsonfile_prefix /proc/x/results: cannot write there (...')


def test_nan_checkpoint_is_refused(helpers, shapes_data, trained_run, tmp_path, capsys):
    checkpoint = torch.load(trained_run / 'latest.pth', weights_only=False)
    for value in checkpoint['state_dict'].values():
        if value.is_floating_point():
            value.fill_(float('nan'))
    path = tmp_path / 'nan.pth'
    torch.save(checkpoint, path)
    status = helpers.run_in_process('test', argv_of_test(helpers, shapes_data, path, '--eval', 'bbox'))
    stderr = capsys.readouterr().err
    assert_one_line(status, stderr, 'test.py', f'checkpoint {path}: ...')
    line = error_lines(stderr)[0]
    assert ' tensors hold NaN (e.g. ' in line and line.endswith('the run diverged; use an earlier checkpoint'), line


def thin_image(tmp_path) -> str:
    path = tmp_path / 'strip.jpg'
    cv2.imwrite(str(path), np.full((4, 4000, 3), 128, np.uint8))
    return str(path)


@pytest.mark.parametrize('case, expected', [
    ('device', '--device foo: not a device (expected cpu, cuda or cuda:N)'),
    ('out_file', '--out-file {tmp}/result: expected an image file name ending in .jpg, .png, ... (the extension '
                 'chooses the format)'),
    ('thin', 'image file {tmp}/strip.jpg: the image is 4000x4 pixels; resized for the model it would be ...'),
])
def test_image_demo_arguments(helpers, shapes_data, trained_run, tmp_path, capsys, case, expected):
    image = str(shapes_data / 'val' / 'val_00001.jpg')
    argv = [image, helpers.demo_config, str(trained_run / 'latest.pth'), '--device', 'cpu',
            '--out-file', str(tmp_path / 'out.jpg')]
    if case == 'device':
        argv[4] = 'foo'
    elif case == 'out_file':
        argv[6] = str(tmp_path / 'result')
    else:
        argv[0] = thin_image(tmp_path)
    status = helpers.run_in_process('image_demo', argv)
    assert_one_line(status, capsys.readouterr().err, 'image_demo.py', expected.format(tmp=tmp_path))


def test_get_flops_shape(helpers, capsys):
    status = helpers.run_in_process('get_flops', [helpers.demo_config, '--shape', '0', '0'])
    assert status == 2
    # argparse's own error (status 2; in-process its program name is pytest's)
    assert capsys.readouterr().err.splitlines()[-1].endswith(': error: --shape 0 0: sizes must be positive')


def test_deploy_device_and_config(helpers, trained_run, shapes_data, raising_config, tmp_path, capsys):
    pytest.importorskip('mmdeploy')
    deploy_cfg = next(str(p) for p in sorted((helpers.repo / 'deploy/configs/mmdet/instance-seg').glob('*.py'))
                      if 'onnxruntime' in p.name)
    image = str(shapes_data / 'val' / 'val_00001.jpg')
    argv = [deploy_cfg, helpers.demo_config, str(trained_run / 'latest.pth'), image, '--work-dir', str(tmp_path)]
    status = helpers.run_in_process('deploy', [*argv, '--device', 'foo'])
    assert_one_line(status, capsys.readouterr().err, 'deploy.py',
                    '--device foo: not a device (expected cpu, cuda or cuda:N)')
    argv[1] = str(raising_config)
    status = helpers.run_in_process('deploy', [*argv, '--device', 'cpu'])
    assert_one_line(status, capsys.readouterr().err, 'deploy.py',
                    f'model_cfg {raising_config}, line 3: ZeroDivisionError: division by zero')


# ---------------------------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('script, arguments, expected', [
    ('dist_train.sh', ['{config}', 'abc'], 'dist_train.sh: error: GPUS=abc: expected a positive integer'),
    ('dist_train.sh', ['{config}', '0'], 'dist_train.sh: error: GPUS=0: expected a positive integer'),
    ('dist_train.sh', ['configs/missing.py', '2'], 'dist_train.sh: error: config file configs/missing.py does not '
                                                   'exist'),
    ('dist_test.sh', ['{config}', 'missing.pth', '2'], 'dist_test.sh: error: checkpoint missing.pth does not exist'),
    ('dist_test.sh', ['{config}', '{config}', 'x'], 'dist_test.sh: error: GPUS=x: expected a positive integer'),
])
def test_launchers_check_their_arguments_before_torchrun(helpers, script, arguments, expected):
    arguments = [argument.format(config=helpers.demo_config) for argument in arguments]
    result = helpers.run_script(['sh', script, *arguments], check=False, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [expected]


# ---------------------------------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------------------------------

def test_resume_from_a_released_checkpoint_and_load_from_a_non_checkpoint(helpers, shapes_data, trained_run,
                                                                          tmp_path, capsys):
    checkpoint = torch.load(trained_run / 'latest.pth', weights_only=False)
    released = tmp_path / 'released.pth'
    torch.save({'state_dict': checkpoint['state_dict']}, released)   # weights only, as every released checkpoint
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path / 'a') + [
        '--resume-from', str(released)])
    assert_one_line(status, capsys.readouterr().err, 'train.py',
                    f'--resume-from {released}: holds weights only, no training state (meta epoch/iter) to resume; '
                    f'to start a new run from these weights use --cfg-options load_from={released}')
    not_a_checkpoint = tmp_path / 'list.pth'
    torch.save([1, 2, 3], not_a_checkpoint)
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path / 'b',
                                                        f'load_from={not_a_checkpoint}'))
    assert_one_line(status, capsys.readouterr().err, 'train.py',
                    f'config field load_from {not_a_checkpoint}: holds no state_dict of tensors')


def test_auto_resume_falls_back_to_the_newest_intact_checkpoint(helpers, shapes_data, trained_run, tmp_path,
                                                                capsys):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    shutil.copy(trained_run / 'iter_2.pth', work_dir / 'iter_2.pth')
    (work_dir / 'iter_4.pth').write_bytes((trained_run / 'iter_4.pth').read_bytes()[:5000])   # truncated
    os.symlink('iter_6.pth', work_dir / 'latest.pth')                                        # dangling
    stale = work_dir / 'iter_4.pth.999999999.tmp'                                             # a killed save's
    stale.write_bytes(b'half')
    with pytest.warns(UserWarning, match=f'--auto-resume: skipping checkpoint {work_dir}/iter_4.pth: cannot be read'):
        status = helpers.run_in_process('train', [helpers.demo_config, '--work-dir', str(work_dir), '--no-validate',
                                                  '--auto-resume', '--cfg-options',
                                                  *helpers.tiny_cfg_options(shapes_data, max_iters=3)])
    assert status == 0, capsys.readouterr().err[-3000:]
    log = next(work_dir.glob('*.log')).read_text()
    assert f'--auto-resume: resuming from {work_dir}/iter_2.pth' in log
    assert (work_dir / 'iter_3.pth').is_file() and os.readlink(work_dir / 'latest.pth') == 'iter_3.pth'
    assert not stale.exists()


# ---------------------------------------------------------------------------------------------------------------
# A diverging run
# ---------------------------------------------------------------------------------------------------------------

def diverging_argv(helpers, shapes_data, work_dir, *extra) -> list[str]:
    """lr 1e30: the first step sends the weights to ~1e30, the next forward overflows to inf and the norms to NaN."""
    return [helpers.demo_config, '--work-dir', str(work_dir), '--no-validate', '--seed', '0', '--cfg-options',
            *helpers.tiny_cfg_options(shapes_data, max_iters=5, checkpoint_interval=1),
            'checkpoint_config.max_keep_ckpts=1', 'optimizer.lr=1e30', *extra]


def finite(path: Path) -> bool:
    state_dict = torch.load(path, weights_only=False)['state_dict']
    return all(bool(torch.isfinite(v).all()) for v in state_dict.values() if v.is_floating_point())


@pytest.mark.slow
def test_diverging_run_stops_at_the_first_nonfinite_loss(helpers, shapes_data, tmp_path, capsys):
    work_dir = tmp_path / 'stop'
    status = helpers.run_in_process('train', diverging_argv(helpers, shapes_data, work_dir))
    assert_one_line(status, capsys.readouterr().err, 'train.py',
                    f'iteration 2: the loss is nan (not finite), training stopped; the last finite checkpoint is '
                    f'{work_dir}/iter_1.pth (lower optimizer.lr, or set nonfinite_loss=skip to skip such steps)')
    assert sorted(p.name for p in work_dir.glob('iter_*.pth')) == ['iter_1.pth'] and finite(work_dir / 'iter_1.pth')


@pytest.mark.slow
def test_diverging_run_without_the_guard_keeps_its_last_finite_checkpoint(helpers, shapes_data, tmp_path, capsys):
    work_dir = tmp_path / 'off'
    status = helpers.run_in_process('train', diverging_argv(helpers, shapes_data, work_dir, 'nonfinite_loss=off'))
    assert status == 0, capsys.readouterr().err[-3000:]
    # max_keep_ckpts=1 would leave iter_5.pth alone (NaN); the rotation kept iter_1.pth, the last finite one
    assert sorted(p.name for p in work_dir.glob('iter_*.pth')) == ['iter_1.pth', 'iter_5.pth']
    assert finite(work_dir / 'iter_1.pth') and not finite(work_dir / 'iter_5.pth')
