"""The operators' C++/CUDA sources stay within C++17: torch < 2.14 compiles extensions with -std=c++17 (and nvcc
before 12 has no C++20), while this machine's torch 2.14 compiles them as C++20 and would not notice. The torch-free
headers are compiled as C++17 by tests/ops_dcnv3/test_cuda_bodies_sanitized.py; the sources that include ATen cannot
be compiled as C++17 against torch 2.14's headers, so they are screened here for the C++20-only names and syntax
that a C++17 build rejects (std::atomic_ref once stopped the build on the GPU machines' torch 2.11)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for package in ('ops_common', 'ops_dcnv3', 'ops_dcnv4', 'ops_roialign')
                 for p in (REPO / package / 'src').rglob('*') if p.suffix in ('.h', '.cpp', '.cu', '.cuh'))
SOURCES += sorted((REPO / 'tools' / 'kernel_check').glob('*.cpp'))

CXX20_ONLY = {
    r'std::atomic_ref\b': 'std::atomic_ref (use dcnv3::host_atomic_add)',
    r'std::span\b|#include <span>': 'std::span',
    r'std::bit_cast\b|#include <bit>': '<bit> / std::bit_cast',
    r'#include <(concepts|ranges|numbers|format|source_location|compare|coroutine)>': 'a C++20 header',
    r'\bconsteval\b|\bconstinit\b|\bco_await\b|\bco_return\b|\bco_yield\b': 'a C++20 keyword',
    r'\brequires\s*[({]|\bconcept\s+\w+\s*=': 'concepts',
    r'<=>': 'the three-way comparison operator',
    r'\[\[(likely|unlikely|no_unique_address)\]\]': 'a C++20 attribute',
    r'\bstd::(ssize|midpoint|lerp|to_array|erase_if)\b': 'a C++20 library function',
    r'\.contains\(': 'a C++20 container member (contains)',
    r'\[\]\s*<\s*(typename|class)\b': 'a template lambda',
    r'\busing\s+enum\b': 'using enum',
}


def test_sources_are_found():
    assert any(p.name == 'dcnv3_cuda_bodies.h' for p in SOURCES) and len(SOURCES) >= 10


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_cxx20_only_constructs(path):
    code = re.sub(r'//[^\n]*|/\*.*?\*/', '', path.read_text(), flags=re.S)  # comments may name them
    found = [what for pattern, what in CXX20_ONLY.items() if re.search(pattern, code)]
    assert not found, f'{path.relative_to(REPO)} uses {", ".join(found)}, which C++17 builds (torch < 2.14) reject'
