"""The stack check turns a wrong install into one error line naming the fix.

Each case runs `import mmdet_custom` in a fresh interpreter with stand-in packages placed first on the path.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _import_with_stand_ins(tmp_path: Path, packages: dict) -> subprocess.CompletedProcess:
    for relative_path, source in packages.items():
        target = tmp_path / relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    return subprocess.run([sys.executable, '-c', 'import mmdet_custom'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def _last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize('packages, expected', [
    ({'mmcv/__init__.py': "__version__ = '2.1.0'\n"}, 'mmcv 2.1.0 is installed, but this project needs mmcv-full 1.7'),
    ({'mmcv/__init__.py': "__version__ = '1.5.0'\n", 'mmcv/_ext.py': ''}, 'mmcv-full 1.5.0 is installed'),
    ({'mmcv/__init__.py': "__version__ = '1.7.2'\n"}, 'without its compiled ops'),
    ({'mmcv/__init__.py': "__version__ = '1.7.2'\n",
      'mmcv/_ext.py': "raise ImportError('undefined symbol: _ZN3c10')\n"}, 'fail to load'),
])
def test_wrong_mmcv_is_one_clear_error(tmp_path, packages, expected):
    result = _import_with_stand_ins(tmp_path, packages)
    assert result.returncode != 0
    line = _last_line(result)
    assert line.startswith('mmcv_custom.stack_check.StackError: ')
    assert expected in line
    assert 'make setup' in line


@pytest.mark.parametrize('version, expected', [
    ('3.0.0', 'mmdet 3.0.0 is installed, but this project is an mmdet 2.28.x plugin'),
    ('2.25.0', 'mmdet 2.25.0 is installed, but this project needs mmdet 2.28.x'),
])
def test_wrong_mmdet_is_one_clear_error(tmp_path, version, expected):
    # The real mmcv-full, a stand-in mmdet.
    result = _import_with_stand_ins(tmp_path, {'mmdet/__init__.py': f"__version__ = '{version}'\n"})
    assert result.returncode != 0
    assert expected in _last_line(result)


def test_installed_stack_passes():
    result = subprocess.run([sys.executable, '-c', 'import mmdet_custom; print("ok")'], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith('ok')
