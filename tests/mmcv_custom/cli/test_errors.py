"""The one error reporter of the entry points: one line, exit status 1; the traceback only when asked for."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmcv_custom.cli.errors import UserError, check_launcher_args, error_line, run_cli

REPO = Path(__file__).resolve().parents[3]

PROGRAM = '''
import sys
from mmcv_custom.cli.errors import UserError, run_cli

def main():
    raise UserError('config file x.py does not exist')

run_cli(main, 'prog.py')
'''


def _run(*args, env=None):
    import os
    return subprocess.run([sys.executable, '-c', PROGRAM, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_user_error_is_one_line_and_exit_status_1():
    result = _run()
    assert result.returncode == 1
    # (import-time warnings of mmcv / torch may come first)
    assert [line for line in result.stderr.splitlines() if 'error' in line] == [
        'prog.py: error: config file x.py does not exist']
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('args, env', [(['--debug'], None), ([], {'INTERNIMAGE_DEBUG': '1'})])
def test_debug_shows_the_traceback(args, env):
    result = _run(*args, env=env)
    assert result.returncode == 1
    assert 'Traceback (most recent call last)' in result.stderr
    assert result.stderr.strip().splitlines()[-1] == 'mmcv_custom.cli.errors.UserError: config file x.py does not exist'


def test_other_exceptions_keep_their_traceback():
    def main():
        raise ZeroDivisionError('a bug')
    with pytest.raises(ZeroDivisionError):
        run_cli(main, 'prog.py')


def test_error_raised_in_a_data_loader_worker_keeps_its_message():
    """torch re-raises a worker's exception with the worker's traceback as its message: the last line is ours."""
    message = ('Caught UnreadableImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call '
               'last):\n  File "x.py", line 1, in f\nmmdet_custom.datasets.pipelines.UnreadableImageError: image file '
               'a.jpg cannot be read or decoded (no image decoded)\n')
    assert error_line(UserError(message)) == 'image file a.jpg cannot be read or decoded (no image decoded)'


def test_ctrl_c_is_one_line_and_status_130(capsys, monkeypatch):
    monkeypatch.delenv('INTERNIMAGE_DEBUG', raising=False)
    monkeypatch.setattr(sys, 'argv', ['prog.py'])

    def main():
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, 'prog.py')
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == 'prog.py: interrupted\n'


@pytest.mark.parametrize('items, line', [
    (['CONFIG=configs/missing.py'], 'dist_train.sh: error: config file configs/missing.py does not exist'),
    ([f'CONFIG={REPO}/README.md'], f'dist_train.sh: error: config file {REPO}/README.md: expected a .py, .json or '
                                   '.yaml file'),
    (['GPUS=abc'], 'dist_train.sh: error: GPUS=abc: expected a positive integer'),
    (['GPUS=0'], 'dist_train.sh: error: GPUS=0: expected a positive integer'),
    (['GPUS=-2'], 'dist_train.sh: error: GPUS=-2: expected a positive integer'),
    (['NNODES='], 'dist_train.sh: error: NNODES=: expected a positive integer'),
    (['CPUS_PER_TASK=4x'], 'dist_train.sh: error: CPUS_PER_TASK=4x: expected a positive integer'),
    (['CHECKPOINT=missing.pth'], 'dist_train.sh: error: checkpoint missing.pth does not exist'),
])
def test_launcher_arguments(items, line, capsys):
    assert check_launcher_args('dist_train.sh', items) == 2
    assert capsys.readouterr().err == line + '\n'


def test_launcher_arguments_that_are_fine(capsys):
    config = REPO / 'configs/demo/mask_rcnn_internimage_demo_shapes.py'
    assert check_launcher_args('dist_test.sh', [f'CONFIG={config}',
                                                'GPUS=2', 'NNODES=1', 'CHECKPOINT=s3://bucket/x.pth']) == 0
    assert capsys.readouterr().err == ''
