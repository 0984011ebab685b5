"""Set-up cannot half-fail: tools/install/pip_quiet.sh drops pip's noise but keeps its exit status, and a failed
install stops `make setup` with pip's own message on the terminal.

No network: the failing install asks pip for a package with the index switched off (PIP_NO_INDEX) and an empty
--find-links folder, so pip fails at once with its "Could not find a version" error.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PIP_QUIET = REPO / 'tools' / 'install' / 'pip_quiet.sh'
MISSING = 'internimage-det-test-package-that-is-not-there'


def _offline_env(tmp_path: Path) -> dict:
    links = tmp_path / 'no_packages'
    links.mkdir(exist_ok=True)
    return {**os.environ, 'PIP_NO_INDEX': '1', 'PIP_FIND_LINKS': str(links)}


def test_noise_is_dropped_and_the_status_kept(tmp_path):
    fake_python = tmp_path / 'python'   # stands in for `python -m pip ...`: noise, a real line, exit status 3
    fake_python.write_text('#!/bin/sh\necho "WARNING: Location \'/nowhere\' is ignored: it is not a directory."\n'
                           'echo "Successfully installed nothing"\nexit 3\n')
    fake_python.chmod(0o755)
    result = subprocess.run(['bash', str(PIP_QUIET), str(fake_python), 'install', 'x'], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 3
    assert 'Successfully installed nothing' in result.stdout
    assert 'WARNING: Location' not in result.stdout + result.stderr
    assert "'pip install x' failed with exit status 3" in result.stderr


def test_failed_pip_install_fails_with_pips_message(tmp_path):
    result = subprocess.run(['bash', str(PIP_QUIET), sys.executable, 'install', MISSING], capture_output=True,
                            text=True, timeout=120, env=_offline_env(tmp_path))
    assert result.returncode == 1   # pip's own status for a requirement it cannot satisfy
    assert f'ERROR: Could not find a version that satisfies the requirement {MISSING}' in result.stdout


@pytest.mark.skipif(shutil.which('make') is None, reason='make is not installed')
def test_make_setup_stops_at_a_failed_install(tmp_path):
    """The Makefile's own install rule, run against a requirements file naming a package that does not exist (in a
    temporary VENV folder, with this environment's Python): `make setup` must fail there, with pip's message."""
    requirements = tmp_path / 'requirements.txt'
    requirements.write_text(f'{MISSING}\n')
    venv = tmp_path / 'venv'
    result = subprocess.run(['make', '-C', str(REPO), 'setup', f'VENV={venv}', f'PY={sys.executable}',
                             f'BUILD_REQUIREMENTS={requirements}'], capture_output=True, text=True, timeout=300,
                            env=_offline_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f'Could not find a version that satisfies the requirement {MISSING}' in output
    assert not (venv / '.deps-stamp').exists()
    assert 'build_mmcv_full.sh' not in output   # stopped at the failed install, nothing after it ran


def test_every_install_line_of_make_setup_keeps_pips_status(tmp_path):
    """Dry run: every pip call of `make setup` goes through pip_quiet.sh, and none is followed by `|| true`."""
    result = subprocess.run(['make', '-C', str(REPO), '-n', '-B', f'{tmp_path}/venv/.deps-stamp',
                             f'VENV={tmp_path}/venv', f'PY={sys.executable}'], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    pip_lines = [line for line in result.stdout.splitlines() if ' pip ' in f' {line} ' or 'pip_quiet.sh' in line]
    assert len(pip_lines) == 4, result.stdout
    for line in pip_lines:
        assert line.startswith('bash tools/install/pip_quiet.sh '), line
        assert '|| true' not in line and '| grep' not in line, line
