"""The entry points' second round of checks (mmcv_custom/cli/checks.py): the one config loader (the user's file and
line, no noise from mmcv's temporary copy), ``--cfg-options`` items, the validation pass over the merged config,
``--eval-options``, devices and output pictures, and the checkpoint checks of every load path."""
from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

import pytest
import torch

import mmdet_custom  # noqa: F401  (registrations)
from mmcv_custom.cli.checks import (
    KeyValueAction,
    check_device,
    check_eval_options,
    check_finite_weights,
    check_image_output,
    check_image_size,
    check_resumable,
    check_test_config,
    check_train_config,
    load_config,
    newest_intact_checkpoint,
    read_config,
    state_dict_of,
)
from mmcv_custom.cli.errors import UserError

REPO = Path(__file__).resolve().parents[3]
DEMO = str(REPO / 'configs/demo/mask_rcnn_internimage_demo_shapes_scratch.py')


def raises_line(line: str):
    """``pytest.raises`` for a UserError whose message is exactly ``line``."""
    import re
    return pytest.raises(UserError, match=f'^{re.escape(line)}$')


# ---------------------------------------------------------------------------------------------------------------
# The config loader
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture()
def unraisable(monkeypatch):
    """What Python reports as "Exception ignored in ..." (mmcv's temporary-copy clean-up did, after every failure)."""
    seen = []
    monkeypatch.setattr(sys, 'unraisablehook', seen.append)
    return seen


@pytest.mark.parametrize('source, line', [
    ('a = 1\nb = 1 / 0\n', 'line 2: ZeroDivisionError: division by zero'),
    ('import os\n\nroot = os.pathh.join("a", "b")\n', "line 3: AttributeError: module 'os' has no attribute 'pathh'"),
    ('model = dict(\n    type="MaskRCNN",\n    neck=dict(type="FPN",\n)\n', 'line 1: syntax error: '),
])
def test_config_that_fails_names_the_users_file_and_line(tmp_path, unraisable, source, line):
    config = tmp_path / 'my_config.py'
    config.write_text(source)
    path_before = list(sys.path)
    with pytest.raises(UserError) as error:
        read_config(str(config))
    assert str(error.value).startswith(f'config file {config}, {line}'), str(error.value)
    assert '/tmp' not in str(error.value).replace(str(tmp_path), '')   # never mmcv's temporary copy
    gc.collect()
    assert unraisable == [] and sys.path == path_before


def test_failing_base_file_is_named(tmp_path, unraisable):
    (tmp_path / 'base.py').write_text('x = 1\ny = undefined_name\n')
    config = tmp_path / 'child.py'
    config.write_text("_base_ = ['./base.py']\nz = 2\n")
    with raises_line(f"config file {config}: its base {tmp_path / 'base.py'}, line 2: NameError: name "
                     "'undefined_name' is not defined"):
        read_config(str(config))
    gc.collect()
    assert unraisable == []


def test_broken_yaml_names_the_line(tmp_path, unraisable):
    config = tmp_path / 'my_config.yaml'
    config.write_text('model:\n  type: MaskRCNN\n  neck: [FPN\n')
    with pytest.raises(UserError, match=rf'^config file {config}, line 4: invalid YAML: '):
        read_config(str(config))
    gc.collect()
    assert unraisable == []


def test_config_without_model_or_data(tmp_path):
    config = tmp_path / 'empty.py'
    config.write_text('optimizer = dict(type="SGD", lr=0.01)\n')
    with raises_line(f'config file {config} has no model (set it there or in a _base_ file)'):
        load_config(str(config), required=('model', 'data.train'))
    config.write_text('model = dict(type="MaskRCNN")\n')
    with raises_line(f'config file {config} has no data.train (set it there or in a _base_ file)'):
        load_config(str(config), required=('model', 'data.train'))


# ---------------------------------------------------------------------------------------------------------------
# --cfg-options items
# ---------------------------------------------------------------------------------------------------------------

def parse_options(*items: str) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=KeyValueAction)
    return parser.parse_args(['--cfg-options', *items]).cfg_options


@pytest.mark.parametrize('item, line', [
    ('optimizer.lr', '--cfg-options optimizer.lr: expected KEY=VALUE'),
    ('=3', '--cfg-options =3: expected KEY=VALUE'),
    ('data.train.pipeline.2.img_scale=(64,64', '--cfg-options data.train.pipeline.2.img_scale=(64,64: unbalanced '
                                               'brackets in the value'),
    ('lr_config.step=[8,11]]', '--cfg-options lr_config.step=[8,11]]: unbalanced brackets in the value'),
])
def test_malformed_cfg_options_item(item, line):
    with raises_line(line):
        parse_options(item)


def test_well_formed_cfg_options_parse_as_mmcv():
    assert parse_options('a=1', 'b=[1,(2,3)]', 'c=x=y') == {'a': 1, 'b': [1, (2, 3)], 'c': 'x=y'}


# ---------------------------------------------------------------------------------------------------------------
# The validation pass over the merged config
# ---------------------------------------------------------------------------------------------------------------

def merged(**fields):
    cfg = load_config(DEMO)
    cfg.merge_from_dict(fields)
    return cfg


CONFIGS = sorted(str(p) for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)


def test_every_shipped_config_passes_the_validation_pass():
    from mmcv import Config
    for config in CONFIGS:
        cfg = Config.fromfile(config)
        check_train_config(cfg, validate=True)
        check_test_config(cfg)


@pytest.mark.parametrize('fields, line', [
    ({'data.samples_per_gpu': 0}, 'config field data.samples_per_gpu is 0: expected an integer >= 1'),
    ({'data.workers_per_gpu': -1}, 'config field data.workers_per_gpu is -1: expected an integer >= 0'),
    ({'data.test_dataloader': {'samples_per_gpu': 0}},
     'config field data.test_dataloader.samples_per_gpu is 0: expected an integer >= 1'),
    ({'optimizer.lr': -0.1}, 'config field optimizer: AdamW rejects it: Invalid learning rate: -0.1'),
    ({'optimizer.betas': (0.9, 1.5)}, 'config field optimizer: AdamW rejects it: Invalid beta parameter at index 1: '
                                      '1.5'),
    ({'checkpoint_config.interval': 0}, 'config field checkpoint_config.interval is 0: expected a positive number of '
                                        'epochs/iterations, or -1 (save only at the end)'),
    ({'evaluation.interval': 0}, 'config field evaluation.interval is 0: expected a positive number of '
                                 'epochs/iterations (or train with --no-validate)'),
    ({'evaluation.metric': ['bbox', 'segn']}, "config field evaluation.metric segn: not a metric of CocoDataset "
                                              "(data.val.type); did you mean 'segm'? choose from bbox, segm, "
                                              "proposal, proposal_fast"),
    ({'model.roi_head.bbox_head.num_classes': 3}, 'config field model.roi_head.bbox_head.num_classes is 3, but '
                                                  'data.train.classes has 4 classes: set both to the same number'),
    ({'data.train.classes': ('circle', 'square', 'triangle')},
     'config field model.roi_head.bbox_head.num_classes is 4, but data.train.classes has 3 classes: set both to the '
     'same number'),
])
def test_values_checked_before_anything_is_built(fields, line):
    with raises_line(line):
        check_train_config(merged(**fields), validate=True)


def test_misspelt_optimizer_key_names_the_nearest_argument():
    cfg = load_config(DEMO)
    cfg.optimizer['weight_decy'] = 0.05
    with pytest.raises(UserError, match=r'^config field optimizer\.weight_decy: not an argument of AdamW \(did you '
                                        r'mean weight_decay\? arguments: lr, betas, eps, weight_decay'):
        check_train_config(cfg, validate=True)


def test_unknown_lr_policy_lists_the_known_ones():
    with pytest.raises(UserError, match=r"^config field lr_config\.policy: 'CosineAnealing' is not a known policy "
                                        r"\(did you mean 'CosineAnnealing'\? known: .*\bStep\b"):
        check_train_config(merged(**{'lr_config.policy': 'CosineAnealing'}), validate=True)
    with pytest.raises(UserError, match=r"^config field lr_config: StepLrUpdaterHook rejects it: "):
        check_train_config(merged(**{'lr_config.policy': 'step'}), validate=True)   # step= is missing


def test_no_validate_accepts_what_only_validation_reads():
    check_train_config(merged(**{'evaluation.interval': 0, 'evaluation.metric': 'bbx'}), validate=False)
    check_train_config(merged(**{'checkpoint_config.interval': -1}), validate=True)   # mmcv: save at the end only


# ---------------------------------------------------------------------------------------------------------------
# --eval-options, devices, output pictures, image sizes
# ---------------------------------------------------------------------------------------------------------------

COCO = dict(type='CocoDataset')


def test_eval_options_are_checked_against_evaluate():
    with raises_line('--eval-options foo: not an option of CocoDataset.evaluate (options: jsonfile_prefix, '
                     'classwise, proposal_nums, iou_thrs, metric_items)'):
        check_eval_options(COCO, 'data.test', {'foo': 1}, format_only=False)
    with pytest.raises(UserError, match=r'^--eval-options classwis: .*did you mean classwise\?'):
        check_eval_options(COCO, 'data.test', {'classwis': True}, format_only=False)
    check_eval_options(COCO, 'data.test', {'classwise': True}, format_only=False)


def test_format_only_needs_a_writable_jsonfile_prefix(tmp_path):
    with raises_line('--format-only: pass --eval-options jsonfile_prefix=PATH/NAME to say where the result files go '
                     '(without it mmdet writes them into a temporary folder and deletes them)'):
        check_eval_options(COCO, 'data.test', None, format_only=True)
    check_eval_options(COCO, 'data.test', {'jsonfile_prefix': str(tmp_path / 'out' / 'results')}, format_only=True)
    with pytest.raises(UserError, match=r'^--eval-options jsonfile_prefix /proc/nope/results: cannot write there'):
        check_eval_options(COCO, 'data.test', {'jsonfile_prefix': '/proc/nope/results'}, format_only=True)


@pytest.mark.parametrize('device', ['foo', 'gpu', 'cuda:x', ''])
def test_device_that_is_not_one(device):
    with raises_line(f'--device {device}: not a device (expected cpu, cuda or cuda:N)'):
        check_device(device)


def test_devices_that_are_fine():
    for device in ('cpu', 'cuda', 'cuda:0'):
        check_device(device)


def test_output_picture_needs_an_image_extension():
    with raises_line('--out-file out/result: expected an image file name ending in .jpg, .png, ... (the extension '
                     'chooses the format)'):
        check_image_output('out/result', '--out-file')
    check_image_output('out/result.PNG', '--out-file')


def test_image_too_thin_for_the_model():
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='MultiScaleFlipAug', img_scale=(1333, 800), flip=False,
                     transforms=[dict(type='Resize', keep_ratio=True)])]
    # 4000x4 scaled by min(1333 / 4000, 800 / 4) = 1/3: 1333x1
    with raises_line('image file a.jpg: the image is 4000x4 pixels; resized for the model it would be 1333x1, under '
                     'the 32 pixels a side the detector needs'):
        check_image_size(4, 4000, pipeline, 'image file a.jpg')
    check_image_size(480, 640, pipeline, 'image file a.jpg')
    check_image_size(4, 4, pipeline, 'image file a.jpg')   # small but square: scaled up to 800x800
    fixed = [dict(type='Resize', img_scale=(64, 16), keep_ratio=False)]
    with raises_line('image file a.jpg: the image is 640x480 pixels; resized for the model it would be 64x16, under '
                     'the 32 pixels a side the detector needs'):
        check_image_size(480, 640, fixed, 'image file a.jpg')


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: NaN weights, released (meta-less) checkpoints, the newest intact checkpoint for --auto-resume
# ---------------------------------------------------------------------------------------------------------------

def save(path: Path, weight: float, meta: bool = True) -> Path:
    checkpoint = {'state_dict': {'layer.weight': torch.full((2, 2), weight), 'layer.bias': torch.zeros(2)}}
    if meta:
        checkpoint['meta'] = {'epoch': 1, 'iter': 4}
    torch.save(checkpoint, path)
    return path


def test_nan_weights_are_refused(tmp_path):
    path = save(tmp_path / 'iter_4.pth', float('nan'))
    with raises_line(f'checkpoint {path}: 1 of 2 tensors hold NaN (e.g. layer.weight): the run diverged; use an '
                     'earlier checkpoint'):
        state_dict_of(torch.load(path, weights_only=False), str(path))
    check_finite_weights({'mask': torch.tensor([float('-inf'), 0.0])}, 'x.pth')   # inf alone can be a mask value


def test_released_checkpoint_cannot_be_resumed(tmp_path):
    path = save(tmp_path / 'released.pth', 1.0, meta=False)
    with raises_line(f'--resume-from {path}: holds weights only, no training state (meta epoch/iter) to resume; to '
                     f'start a new run from these weights use --cfg-options load_from={path}'):
        check_resumable(torch.load(path, weights_only=False), str(path))


def test_newest_intact_checkpoint_skips_broken_ones(tmp_path):
    save(tmp_path / 'iter_2.pth', 1.0)
    save(tmp_path / 'iter_4.pth', 1.0)
    save(tmp_path / 'iter_6.pth', float('nan'))                         # diverged
    (tmp_path / 'iter_8.pth').write_bytes(b'PK\x03\x04 truncated')       # killed mid-write (no atomic save)
    save(tmp_path / 'iter_10.pth', 1.0, meta=False)                      # weights only
    os.symlink('iter_12.pth', tmp_path / 'latest.pth')                   # dangling: points at a deleted file
    with pytest.warns(UserWarning, match='--auto-resume: skipping checkpoint'):
        assert newest_intact_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')
    assert newest_intact_checkpoint(str(tmp_path / 'missing')) is None
