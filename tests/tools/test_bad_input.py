"""Bad input gives one clear line naming the file or field and a non-zero exit; an unreadable image met during
training is skipped with a warning (and stops testing with its name).

The error cases run the entry points' ``main`` in-process (the same code path as ``python train.py``, whose
``__main__`` block is ``run_cli(main)``); one case checks the real command line end to end.
"""
from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture()
def data_copy(shapes_data, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    copy = tmp_path / 'data'
    shutil.copytree(shapes_data, copy)
    return copy


def train_argv(helpers, data_dir, work_dir, *extra) -> list[str]:
    return [helpers.demo_config, '--work-dir', str(work_dir), '--no-validate',
            '--cfg-options', *helpers.tiny_cfg_options(data_dir, max_iters=2), *extra]


def assert_one_line_error(status, stderr, *fragments):
    assert status != 0
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
