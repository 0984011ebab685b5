"""tools/install/release_cflags.sh: the flags every compiled extension is built with keep Python's release
optimisation (setuptools *replaces* Python's CFLAGS with $CFLAGS, so `CFLAGS=-g0` alone would build at -O0)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / 'tools' / 'install' / 'release_cflags.sh'
BUILD_SCRIPTS = ('tools/install/build_op.sh', 'tools/install/build_mmcv_full.sh', 'tools/gpu_check.sh')


def release_cflags(**env: str) -> str:
    result = subprocess.run(['bash', str(SCRIPT), sys.executable], capture_output=True, text=True, check=True,
                            env={**{k: v for k, v in os.environ.items() if k != 'CFLAGS'}, **env})
    return result.stdout.strip()


def compiler_flags_under(cflags: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The flags setuptools' compiler (the one torch's BuildExtension drives) compiles with under CFLAGS=cflags."""
    from setuptools._distutils import ccompiler
    from setuptools._distutils import sysconfig as du_sysconfig

    monkeypatch.setenv('CFLAGS', cflags)
    compiler = ccompiler.new_compiler()
    du_sysconfig.customize_compiler(compiler)
    return list(compiler.compiler_so)


def python_optimisation() -> str:
    levels = re.findall(r'-O\w*', sysconfig.get_config_var('CFLAGS') or '')
    if not levels:
        pytest.skip("this Python's CFLAGS name no optimisation level")
    return levels[-1]


def test_the_compiler_keeps_pythons_optimisation_and_drops_debug_info(monkeypatch):
    flags = compiler_flags_under(release_cflags(), monkeypatch)
    assert python_optimisation() in flags and '-DNDEBUG' in flags, flags
    debug = [f for f in flags if re.fullmatch(r'-g\d?', f)]
    assert debug and debug[-1] == '-g0', flags  # the last -g wins


def test_a_bare_cflags_would_lose_the_optimisation(monkeypatch):
    # The hazard the script exists for: if setuptools ever appends instead, this fails and the script is moot.
    assert python_optimisation() not in compiler_flags_under('-g0', monkeypatch)


def test_the_callers_cflags_are_kept(monkeypatch):
    flags = compiler_flags_under(release_cflags(CFLAGS='-DINTERNIMAGE_PROBE=1'), monkeypatch)
    assert '-DINTERNIMAGE_PROBE=1' in flags and flags.index('-DINTERNIMAGE_PROBE=1') < flags.index('-g0')


@pytest.mark.parametrize('script', BUILD_SCRIPTS)
def test_every_build_takes_its_cflags_from_the_script(script):
    text = (REPO / script).read_text()
    assert 'release_cflags.sh' in text, script
    for assignment in re.findall(r'CFLAGS=("[^"]*"|\S+)', text):
        assert assignment == '"$cflags"', f'{script}: CFLAGS={assignment} bypasses release_cflags.sh'


def test_the_op_cache_key_covers_the_flags():
    text = (REPO / 'tools' / 'install' / 'build_op.sh').read_text()
    key = text[text.index('key=$('):text.index('| sha256sum | cut')]
    assert 'cflags=$cflags' in key
