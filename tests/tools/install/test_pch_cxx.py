"""tools/install/pch_cxx.sh: the compiler wrapper that gives mmcv-full's build a precompiled header. It must make
GCC use the precompiled header where it can, never change what is compiled, and never use one built with other flags."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
WRAPPER = REPO / 'tools' / 'install' / 'pch_cxx.sh'
CXX = shutil.which('g++')

pytestmark = pytest.mark.skipif(CXX is None or shutil.which('objdump') is None,
                                reason='needs g++ and objdump (GCC precompiled headers)')

HEADER = """\
#ifndef SHARED_HPP
#define SHARED_HPP
#include <map>
#include <string>
#include <vector>
#ifndef VALUE
#define VALUE 0
#endif
template <typename T> T shared_sum(const std::vector<T>& v) { T s{}; for (const T& x : v) s += x; return s; }
inline int shared_value() { return VALUE; }
#endif
"""
FIRST = """\
// a comment before the first include does not stop GCC from using the precompiled header
#include "shared.hpp"
#include <cstdio>
int first() { return shared_sum(std::vector<int>{1, 2, 3}) + shared_value(); }
int main() { std::printf("%d\\n", first()); return 0; }
"""
NOT_FIRST = """\
#include <cstdio>
#include "shared.hpp"
int main() { std::printf("%d\\n", shared_value()); return 0; }
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / 'include').mkdir()
    (tmp_path / 'include' / 'shared.hpp').write_text(HEADER)
    (tmp_path / 'first.cpp').write_text(FIRST)
    (tmp_path / 'not_first.cpp').write_text(NOT_FIRST)
    return tmp_path


def compile_with(compiler: list[str], project: Path, source: str, obj: str, *flags: str,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # The shape of torch's ninja rule: -MMD -MF dep, flags ending in -c, then -c source -o object, then post flags.
    cmd = [*compiler, '-MMD', '-MF', str(project / f'{obj}.d'), '-O2', '-fPIC', f'-I{project / "include"}', '-c',
           '-c', str(project / source), '-o', str(project / obj), '-std=c++17', *flags]
    return subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, 'PCH_HEADER': 'shared.hpp', 'PCH_REAL_CXX': CXX, **(env or {})})


def wrapped(project: Path, source: str, obj: str, *flags: str) -> subprocess.CompletedProcess:
    return compile_with(['bash', str(WRAPPER)], project, source, obj, *flags)


def used_a_precompiled_header(project: Path, source: str, *flags: str) -> bool:
    # -H lists the headers read; '!' marks a valid precompiled header GCC used instead of the text.
    listing = wrapped(project, source, 'probe.o', '-H', *flags).stderr
    return any(line.startswith('! ') and '.gch' in line for line in listing.splitlines())


def precompiled(project: Path) -> list[Path]:
    return sorted((project / 'include' / 'shared.hpp.gch').glob('*.gch'))


def text_section(obj: Path) -> str:
    out = subprocess.run(['objdump', '-d', '--no-show-raw-insn', str(obj)], capture_output=True, text=True,
                         check=True).stdout
    return out.split('\n', 2)[2]  # without the line naming the file


def run_linked(project: Path, obj: str) -> str:
    exe = project / f'{obj}.exe'
    subprocess.run([CXX, str(project / obj), '-o', str(exe)], check=True)
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.strip()


def test_gcc_uses_the_precompiled_header_and_the_object_code_is_unchanged(project):
    wrapped(project, 'first.cpp', 'pch.o')
    assert len(precompiled(project)) == 1
    assert used_a_precompiled_header(project, 'first.cpp')
    compile_with([CXX], project, 'first.cpp', 'plain.o')
    assert text_section(project / 'pch.o') == text_section(project / 'plain.o')
    assert run_linked(project, 'pch.o') == '6'


def test_another_flag_set_gets_its_own_precompiled_header(project):
    wrapped(project, 'first.cpp', 'one.o', '-DVALUE=1')
    wrapped(project, 'first.cpp', 'two.o', '-DVALUE=2')
    assert len(precompiled(project)) == 2
    assert used_a_precompiled_header(project, 'first.cpp', '-DVALUE=1')
    assert used_a_precompiled_header(project, 'first.cpp', '-DVALUE=2')
    assert (run_linked(project, 'one.o'), run_linked(project, 'two.o')) == ('7', '8')


def test_a_source_that_does_not_start_with_the_header_is_compiled_as_asked(project):
    wrapped(project, 'not_first.cpp', 'nf.o', '-DVALUE=5')
    assert precompiled(project) == []
    assert not used_a_precompiled_header(project, 'not_first.cpp')
    assert run_linked(project, 'nf.o') == '5'


def test_without_a_header_name_and_for_linking_it_passes_through(project):
    compile_with(['bash', str(WRAPPER)], project, 'first.cpp', 'raw.o', env={'PCH_HEADER': ''})
    assert precompiled(project) == []
    exe = project / 'raw.exe'
    subprocess.run(['bash', str(WRAPPER), str(project / 'raw.o'), '-o', str(exe)], check=True,
                   env={**os.environ, 'PCH_HEADER': 'shared.hpp', 'PCH_REAL_CXX': CXX})
    assert subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.strip() == '6'


def test_a_failed_precompile_falls_back_to_reading_the_header(project):
    # A compiler that refuses to precompile (stands for any precompile failure) must not fail the build.
    refusing = project / 'refusing_cxx.sh'
    refusing.write_text(f'#!/bin/sh\ncase " $* " in *" c++-header "*) exit 1 ;; esac\nexec {CXX} "$@"\n')
    refusing.chmod(0o755)
    result = compile_with(['bash', str(WRAPPER)], project, 'first.cpp', 'fallback.o', '-DVALUE=3',
                          env={'PCH_REAL_CXX': str(refusing)})
    assert 'could not precompile' in result.stderr
    assert precompiled(project) == []
    assert run_linked(project, 'fallback.o') == '9'


def test_the_wrapper_as_its_own_compiler_is_an_error_not_a_loop(project):
    # CXX=pch_cxx.sh PCH_REAL_CXX="${CXX}" on one bash line expands to the wrapper itself: it would exec itself forever.
    result = subprocess.run(['bash', str(WRAPPER), '-v'], capture_output=True, text=True, timeout=30,
                            env={**os.environ, 'PCH_HEADER': 'shared.hpp', 'PCH_REAL_CXX': str(WRAPPER)})
    assert result.returncode == 2 and 'names this wrapper itself' in result.stderr
