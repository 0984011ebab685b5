"""`make setup PYTHON=... VENV=...`: tools/install/find_python.sh finds the interpreter, check_stack_pins.py refuses
an unsupported Python before the venv exists and checks the constraints' pins (per Python version) once installed."""
from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

REPO = Path(__file__).resolve().parents[3]
FIND_PYTHON = REPO / 'tools' / 'install' / 'find_python.sh'
CHECK = REPO / 'tools' / 'install' / 'check_stack_pins.py'
sys.path.insert(0, str(CHECK.parent))
import check_stack_pins  # noqa: E402


def test_find_python_takes_a_path_or_a_name():
    for given in (sys.executable, f'python{sys.version_info[0]}.{sys.version_info[1]}'):
        result = subprocess.run(['bash', str(FIND_PYTHON), given], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        found = result.stdout.strip()
        version = subprocess.run([found, '-c', 'import sys; print(sys.version_info[:2])'], capture_output=True,
                                 text=True).stdout.strip()
        assert version == str(tuple(sys.version_info[:2])), (given, found)


def test_find_python_names_what_it_could_not_find():
    result = subprocess.run(['bash', str(FIND_PYTHON), 'python3.99'], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ''
    assert "no working Python 'python3.99'" in result.stderr and 'PYTHON=/path/to/python3.X' in result.stderr


@pytest.mark.parametrize('version', [(3, 11), (3, 12), (3, 13)])
def test_supported_pythons_pass(version):
    assert check_stack_pins.check_python(version) is None


@pytest.mark.parametrize('version', [(3, 10), (3, 14), (2, 7)])
def test_unsupported_python_is_refused_with_the_supported_list(version):
    reason = check_stack_pins.check_python(version)
    assert reason.startswith(f'Python {version[0]}.{version[1]} is not supported') and '3.11, 3.12, 3.13' in reason


def test_python_only_mode_exit_status():
    result = subprocess.run([sys.executable, str(CHECK), '--python-only'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr   # the suite runs on a supported Python


def _constraints(tmp_path, text: str) -> str:
    path = tmp_path / 'constraints.txt'
    path.write_text(text)
    return str(path)


def test_pins_that_hold_pass(tmp_path):
    here = f'{sys.version_info[0]}.{sys.version_info[1]}'
    text = (f'numpy=={numpy.__version__}; python_version == "{here}"   # the pin for this Python\n'
            f'numpy==0.0.1; python_version != "{here}"\n'          # another Python's pin: not this stack's
            'some-package-that-is-not-installed==1.0\n'             # pinned in case it is pulled in
            'pytest>=1\n'                                             # not an == pin
            '# a comment\n-c other.txt\n')
    assert check_stack_pins.check_pins(_constraints(tmp_path, text)) == []


def test_a_pin_that_does_not_hold_is_named(tmp_path):
    path = _constraints(tmp_path, 'numpy==0.0.1\n')
    assert check_stack_pins.check_pins(path) == [f'numpy {numpy.__version__} is installed, {path} pins ==0.0.1']
    result = subprocess.run([sys.executable, str(CHECK), path], capture_output=True, text=True)
    assert result.returncode == 1 and 'pins ==0.0.1' in result.stderr


def test_the_repository_constraints_hold_in_this_environment():
    """What `make setup` checks last: numpy 1.26.4 on Python 3.11, numpy 2 on 3.12+, torch, yapf, ..."""
    assert check_stack_pins.check_pins(str(REPO / 'requirements' / 'constraints.txt')) == []
    assert numpy.__version__.startswith('1.26.' if sys.version_info < (3, 12) else '2.')
    assert md.version('yapf') == '0.40.1'
