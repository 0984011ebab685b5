"""Bad input gives one clear line naming the file or field and a non-zero exit; an unreadable image met during
training is skipped with a warning (and stops testing with its name).

The error cases run the entry points' ``main`` in-process (the same code path as ``python train.py``, whose
``__main__`` block is ``run_cli(main)``); one case checks the real command line end to end.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture()
def data_copy(shapes_data, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    copy = tmp_path / 'data'
    shutil.copytree(shapes_data, copy)
    return copy


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder nothing can be written to. Permissions do not stop root: as root, a folder under /sys (read-only)."""
    folder = tmp_path / 'read_only'
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        folder = Path('/sys/internimage_read_only_test')
        try:
            folder.mkdir()
        except OSError:
            pass
        else:
            folder.rmdir()
            pytest.skip('no read-only folder on this machine')
    yield folder
    (tmp_path / 'read_only').chmod(0o755)


def train_argv(helpers, data_dir, work_dir, *extra) -> list[str]:
    return [helpers.demo_config, '--work-dir', str(work_dir), '--no-validate',
            '--cfg-options', *helpers.tiny_cfg_options(data_dir, max_iters=2), *extra]


def assert_one_line_error(status, stderr, *fragments):
    assert status == 1, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if ': error: ' in line]
    assert len(lines) == 1, stderr[-3000:]
    assert 'Traceback' not in stderr, stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_config_from_the_command_line(helpers, tmp_path):
    result = helpers.run_script(['train.py', 'configs/demo/no_such_config.py'], check=False)
    assert_one_line_error(result.returncode, result.stderr,
                          'train.py: error: config file configs/demo/no_such_config.py does not exist')


def test_missing_config_or_checkpoint_in_test(helpers, trained_run, capsys):
    status = helpers.run_in_process('test', ['configs/demo/no_such_config.py', str(trained_run / 'latest.pth'),
                                             '--eval', 'bbox'])
    assert_one_line_error(status, capsys.readouterr().err, 'config file configs/demo/no_such_config.py does not exist')
    status = helpers.run_in_process('test', [helpers.demo_config, 'missing.pth', '--eval', 'bbox'])
    assert status == 2  # argparse's own one-line error, after the usage text
    assert capsys.readouterr().err.splitlines()[-1].endswith('error: checkpoint file missing.pth does not exist')


def test_config_field_of_wrong_type(helpers, shapes_data, tmp_path, capsys):
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path, 'data.samples_per_gpu=two'))
    assert_one_line_error(status, capsys.readouterr().err,
                          "config field data.samples_per_gpu: expected int, got str 'two'")
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path, 'optimizer.lr=[1,2]'))
    assert_one_line_error(status, capsys.readouterr().err, 'config field optimizer.lr: expected number, got list')
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path,
                                                        'model.backbone.groups=[3,4,8,16]'))
    assert_one_line_error(status, capsys.readouterr().err, 'config field model', 'groups[0] = 3')


def test_missing_image_referenced_by_the_annotation_file(helpers, data_copy, tmp_path, capsys):
    (data_copy / 'train' / 'train_00003.jpg').unlink()
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path))
    assert_one_line_error(status, capsys.readouterr().err, 'data.train: image file', 'train_00003.jpg',
                          'instances_train.json does not exist')


def test_empty_or_imageless_annotation_file(helpers, data_copy, tmp_path, capsys):
    (data_copy / 'annotations' / 'instances_train.json').write_text('')
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path))
    assert_one_line_error(status, capsys.readouterr().err, 'data.train.ann_file: annotation file',
                          'instances_train.json is empty')

    content = json.loads((data_copy / 'annotations' / 'instances_val.json').read_text())
    (data_copy / 'annotations' / 'instances_train.json').write_text(
        json.dumps(dict(images=[], annotations=[], categories=content['categories'])))
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path))
    assert_one_line_error(status, capsys.readouterr().err, 'instances_train.json lists no images')


def test_corrupt_image_is_skipped_with_a_warning_in_training(helpers, data_copy, tmp_path, capsys):
    corrupt = data_copy / 'train' / 'train_00002.jpg'
    corrupt.write_bytes(b'\xff\xd8\xff\xe0 this is not a jpeg')
    with pytest.warns(UserWarning, match=f'skipping unreadable image {corrupt}'):
        status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path / 'work'))
    assert status == 0
    assert (tmp_path / 'work' / 'iter_2.pth').exists()


def test_corrupt_image_stops_testing_with_its_name(helpers, trained_run, data_copy, capsys):
    corrupt = data_copy / 'val' / 'val_00002.jpg'
    corrupt.write_bytes(b'not an image at all')
    status = helpers.run_in_process('test', [helpers.demo_config, str(trained_run / 'latest.pth'), '--eval', 'bbox',
                                             '--cfg-options', *helpers.tiny_cfg_options(data_copy)])
    assert_one_line_error(status, capsys.readouterr().err, f'image file {corrupt} cannot be read or decoded')


# --- checkpoints: corrupt, truncated, of another model ------------------------------------------------------

@pytest.fixture()
def text_checkpoint(tmp_path):
    """A text file named .pth."""
    text = tmp_path / 'not_a_checkpoint.pth'
    text.write_text('this is not a checkpoint\n')
    return text


@pytest.fixture()
def broken_checkpoints(text_checkpoint, trained_run, tmp_path):
    """The text file, and the first half of a real checkpoint (a copy interrupted mid-way)."""
    truncated = tmp_path / 'truncated.pth'
    content = (trained_run / 'latest.pth').read_bytes()
    truncated.write_bytes(content[:len(content) // 2])
    return text_checkpoint, truncated


def test_corrupt_or_truncated_checkpoint_in_test(helpers, shapes_data, broken_checkpoints, capsys):
    text, truncated = broken_checkpoints
    tiny = helpers.tiny_cfg_options(shapes_data)
    status = helpers.run_in_process('test', [helpers.demo_config, str(text), '--eval', 'bbox', '--cfg-options', *tiny])
    assert_one_line_error(status, capsys.readouterr().err,
                          f'test.py: error: checkpoint {text}: cannot be read, truncated or not a checkpoint '
                          '(UnpicklingError: could not find MARK)')
    status = helpers.run_in_process('test', [helpers.demo_config, str(truncated), '--eval', 'bbox',
                                             '--cfg-options', *tiny])
    assert_one_line_error(status, capsys.readouterr().err,
                          f'test.py: error: checkpoint {truncated}: cannot be read, truncated or not a checkpoint '
                          '(RuntimeError: PytorchStreamReader failed reading zip archive')


def test_corrupt_checkpoint_in_image_demo(helpers, shapes_data, text_checkpoint, tmp_path, capsys):
    text = text_checkpoint
    image = shapes_data / 'val' / 'val_00001.jpg'
    status = helpers.run_in_process('image_demo', [str(image), helpers.demo_config, str(text), '--device', 'cpu',
                                                   '--out-file', str(tmp_path / 'out.jpg')])
    assert_one_line_error(status, capsys.readouterr().err,
                          f'image_demo.py: error: checkpoint {text}: cannot be read, truncated or not a checkpoint')
    assert not (tmp_path / 'out.jpg').exists()


def test_corrupt_resume_from_and_load_from_in_train(helpers, shapes_data, broken_checkpoints, tmp_path, capsys):
    text, truncated = broken_checkpoints
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path / 'a', '--resume-from',
                                                        str(truncated)))
    assert_one_line_error(status, capsys.readouterr().err,
                          f'train.py: error: --resume-from {truncated}: cannot be read, truncated or not a checkpoint '
                          '(RuntimeError: PytorchStreamReader failed reading zip archive')
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path / 'b', f'load_from={text}'))
    assert_one_line_error(status, capsys.readouterr().err,
                          f'train.py: error: config field load_from {text}: cannot be read, truncated or not a '
                          'checkpoint (UnpicklingError: could not find MARK)')
    assert not list((tmp_path / 'b').glob('*.pth'))   # stopped before the first iteration


# The trained run has depths [1, 1, 1, 1]; with [1, 1, 2, 1] the model has one more stage-2 block, whose 20 tensors
# (norm1.0, dw_conv.0, dw_conv.1.1, offset, mask, input_proj, output_proj, norm2.0, fc1, fc2; weight and bias each:
# docs/checkpoints.md, no layer scale in the demo config) are missing from the checkpoint. Sorted, the first three:
OTHER_MODEL = ['model.backbone.depths=[1,1,2,1]']
FIRST_MISSING = ('20 missing (e.g. backbone.levels.2.blocks.1.dcn.dw_conv.0.bias, '
                 'backbone.levels.2.blocks.1.dcn.dw_conv.0.weight, backbone.levels.2.blocks.1.dcn.dw_conv.1.1.bias)')


def test_checkpoint_of_another_model_is_refused_in_test(helpers, trained_run, shapes_data, tmp_path, capsys):
    checkpoint = trained_run / 'latest.pth'
    options = ['--cfg-options', *helpers.tiny_cfg_options(shapes_data), *OTHER_MODEL]
    status = helpers.run_in_process('test', [helpers.demo_config, str(checkpoint), '--eval', 'bbox', *options])
    assert_one_line_error(status, capsys.readouterr().err,
                          f'test.py: error: checkpoint {checkpoint} does not match the model of {helpers.demo_config}: '
                          f'{FIRST_MISSING}; pass --allow-partial-checkpoint to load the matching tensors only')
    # the explicit opt-in: evaluated with the 20 tensors left at their initial values
    status = helpers.run_in_process('test', [helpers.demo_config, str(checkpoint), '--eval', 'bbox',
                                             '--allow-partial-checkpoint', '--work-dir', str(tmp_path), *options])
    assert status == 0
    assert list(tmp_path.glob('eval_*.json'))


def test_checkpoint_of_another_model_is_refused_in_image_demo(helpers, trained_run, shapes_data, tmp_path, capsys):
    checkpoint = trained_run / 'latest.pth'
    config = tmp_path / 'other_model.py'   # image_demo.py has no --cfg-options: the other model is a config file
    config.write_text(f'_base_ = [{str(helpers.repo / helpers.demo_config)!r}]\n'
                      'model = dict(backbone=dict(depths=[1, 1, 2, 1]))\n')
    image = shapes_data / 'val' / 'val_00001.jpg'
    status = helpers.run_in_process('image_demo', [str(image), str(config), str(checkpoint), '--device', 'cpu',
                                                   '--out-file', str(tmp_path / 'out.jpg')])
    assert_one_line_error(status, capsys.readouterr().err,
                          f'image_demo.py: error: checkpoint {checkpoint} does not match the model of {config}: '
                          f'{FIRST_MISSING}')
    assert not (tmp_path / 'out.jpg').exists()


def test_resume_from_a_checkpoint_of_another_model_is_refused(helpers, trained_run, shapes_data, tmp_path, capsys):
    checkpoint = trained_run / 'iter_2.pth'
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path, *OTHER_MODEL,
                                                        '--resume-from', str(checkpoint)))
    # argparse's nargs='+' of --cfg-options ends at the next option, so --resume-from is parsed as an option
    assert_one_line_error(status, capsys.readouterr().err,
                          f'train.py: error: --resume-from {checkpoint} does not match the model of '
                          f'{helpers.demo_config}: {FIRST_MISSING}; pass --allow-partial-checkpoint')


def test_debug_switch_shows_the_traceback(helpers, shapes_data, text_checkpoint, monkeypatch):
    from mmcv_custom.cli.errors import UserError
    text = text_checkpoint
    monkeypatch.setenv('INTERNIMAGE_DEBUG', '1')
    with pytest.raises(UserError, match='cannot be read, truncated or not a checkpoint'):
        helpers.run_in_process('test', [helpers.demo_config, str(text), '--eval', 'bbox',
                                        '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])


# --- arguments checked before anything is built ---------------------------------------------------------------

def test_unknown_eval_metric_is_refused_before_anything_is_built(helpers, shapes_data, text_checkpoint, capsys):
    text = text_checkpoint   # a broken checkpoint too: the metric must be refused before it is read
    status = helpers.run_in_process('test', [helpers.demo_config, str(text), '--eval', 'bbx',
                                             '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])
    assert_one_line_error(status, capsys.readouterr().err,
                          "test.py: error: --eval bbx: not a metric of CocoDataset (data.test.type); did you mean "
                          "'bbox'? choose from bbox, segm, proposal, proposal_fast")


def test_unwritable_output_folders(helpers, trained_run, shapes_data, read_only_dir, capsys):
    tiny = helpers.tiny_cfg_options(shapes_data)
    work_dir = read_only_dir / 'work'
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, work_dir))
    assert_one_line_error(status, capsys.readouterr().err,
                          f'train.py: error: --work-dir {work_dir}: cannot write there (')
    out = read_only_dir / 'results.pkl'
    status = helpers.run_in_process('test', [helpers.demo_config, str(trained_run / 'latest.pth'), '--out', str(out),
                                             '--cfg-options', *tiny])
    assert_one_line_error(status, capsys.readouterr().err, f'test.py: error: --out {out}: cannot write there (')


# --- configs and data -----------------------------------------------------------------------------------------

def test_annotation_file_that_is_not_json(helpers, data_copy, tmp_path, capsys):
    ann_file = data_copy / 'annotations' / 'instances_train.json'
    ann_file.write_text('{"images": [')   # cut off
    status = helpers.run_in_process('train', train_argv(helpers, data_copy, tmp_path))
    assert_one_line_error(status, capsys.readouterr().err,
                          f'train.py: error: data.train.ann_file: annotation file {ann_file} is not valid JSON '
                          '(Expecting value: line 1 column 13 (char 12))')


def test_unknown_type_names_the_field_and_the_nearest_registered_names(helpers, shapes_data, tmp_path, capsys):
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path,
                                                        'model.backbone.type=InternImag'))
    assert_one_line_error(status, capsys.readouterr().err,
                          "train.py: error: config field model.backbone.type: 'InternImag' is not a registered type "
                          '(nearest registered names: InternImage')
    status = helpers.run_in_process('train', train_argv(helpers, shapes_data, tmp_path,
                                                        'data.train.pipeline.3.type=RandomFlipp'))
    assert_one_line_error(status, capsys.readouterr().err,
                          "train.py: error: config field data.train.pipeline.3.type: 'RandomFlipp' is not a registered "
                          'type (nearest registered names: RandomFlip')


def test_image_that_is_not_an_image_in_image_demo(helpers, trained_run, tmp_path, capsys):
    fake = tmp_path / 'photo.jpg'
    fake.write_text('hello, I am a text file\n')
    status = helpers.run_in_process('image_demo', [str(fake), helpers.demo_config, str(trained_run / 'latest.pth'),
                                                   '--device', 'cpu'])
    assert_one_line_error(status, capsys.readouterr().err,
                          f'image_demo.py: error: image file {fake} cannot be read or decoded (not an image format '
                          'OpenCV knows)')


# --- a full disk while saving a checkpoint ----------------------------------------------------------------------

def test_disk_full_while_saving_keeps_the_previous_checkpoint(helpers, shapes_data, tmp_path, monkeypatch, capsys):
    """The second save (iteration 4) fails half-way with ENOSPC, as a full disk does: the run stops with one line,
    iter_2.pth and latest.pth stay complete and loadable, and no partial file is left behind."""
    import errno

    import torch

    real_save = torch.save
    saves = []

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 2:
            f.write(b'\x00' * 1024)   # some bytes reach the disk before it is full
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', save_until_the_disk_is_full)
    argv = [helpers.demo_config, '--work-dir', str(tmp_path), '--no-validate',
            '--cfg-options', *helpers.tiny_cfg_options(shapes_data, max_iters=4, checkpoint_interval=2)]
    status = helpers.run_in_process('train', argv)
    assert_one_line_error(status, capsys.readouterr().err,
                          f'train.py: error: checkpoint {tmp_path}/iter_4.pth could not be saved (No space left on '
                          f'device); the previous checkpoint {tmp_path}/iter_2.pth is intact (resume from it with '
                          '--resume-from or --auto-resume once there is space)')
    monkeypatch.setattr(torch, 'save', real_save)
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_2.pth', 'latest.pth']
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]
    assert (tmp_path / 'latest.pth').resolve() == (tmp_path / 'iter_2.pth').resolve()
    checkpoint = torch.load(tmp_path / 'latest.pth', map_location='cpu', weights_only=False)
    assert checkpoint['meta']['iter'] == 2


# --- entry points from any working directory -------------------------------------------------------------------

def test_entry_points_run_from_another_working_directory(helpers, shapes_data, tmp_path):
    """`python /abs/path/train.py` from a folder outside the repository (as mmdet's tools can be run)."""
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    config = str(helpers.repo / helpers.demo_config)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore::DeprecationWarning'}
    result = subprocess.run([sys.executable, str(helpers.repo / 'train.py'), config, '--work-dir', 'work',
                             '--no-validate', '--cfg-options',
                             *helpers.tiny_cfg_options(shapes_data, max_iters=1, checkpoint_interval=1)],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (elsewhere / 'work' / 'iter_1.pth').is_file()
    result = subprocess.run([sys.executable, str(helpers.repo / 'image_demo.py'), 'missing.jpg', config, 'x.pth'],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert_one_line_error(result.returncode, result.stderr,
                          'image_demo.py: error: image file missing.jpg does not exist')
