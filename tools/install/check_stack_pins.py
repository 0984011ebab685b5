"""Check the Python version of a new environment, or that an installed environment holds the constraints' pins.

``check_stack_pins.py --python-only`` (run by ``make setup`` with the chosen interpreter, before the venv exists; stdlib
only) stops with one line where the Python version is outside the supported range. ``check_stack_pins.py
CONSTRAINTS_FILE`` (run in the venv at the end of ``make setup``) checks every ``==`` pin of the file whose
environment marker applies to this Python (numpy 1.26.4 on 3.11, numpy 2 on 3.12+, torch, ...) against the
installed distributions, so a resolver surprise stops the set-up instead of surfacing later as a numpy-ABI error.
"""
from __future__ import annotations

import sys

# The Pythons the stack installs and runs on (README, "Supported versions"); the first one is the default.
SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))


def check_python(version: tuple[int, int] = tuple(sys.version_info[:2])) -> str | None:
    """None where ``version`` is supported, else the one-line reason."""
    if tuple(version) in SUPPORTED_PYTHONS:
        return None
    names = ', '.join(f'{major}.{minor}' for major, minor in SUPPORTED_PYTHONS)
    return (f'Python {version[0]}.{version[1]} is not supported by this stack (supported: {names}); '
            'pass PYTHON=python3.X')


def check_pins(constraints_file: str) -> list[str]:
    """One line per ``==`` pin of ``constraints_file`` (markers evaluated here) that the environment does not hold."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    problems = []
    with open(constraints_file) as f:
        for line in f:
            text = line.split(' #')[0].strip()
            if not text or text.startswith(('#', '-')):
                continue
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate():
                continue
            pins = [spec.version for spec in req.specifier if spec.operator == '==']
            if not pins:
                continue
            try:
                installed = md.version(req.name)
            except md.PackageNotFoundError:
                continue  # pinned in case it is pulled in; not every stack installs it
            if not req.specifier.contains(installed, prereleases=True):
                problems.append(f'{req.name} {installed} is installed, {constraints_file} pins {req.specifier}')
    return problems


def main(argv: list[str]) -> int:
    if argv == ['--python-only']:
        reason = check_python()
        if reason:
            print(f'[setup] {reason}', file=sys.stderr)
            return 1
        return 0
    if len(argv) != 1:
        print('usage: check_stack_pins.py --python-only | CONSTRAINTS_FILE', file=sys.stderr)
        return 2
    problems = check_pins(argv[0])
    for problem in problems:
        print(f'[setup] {problem}', file=sys.stderr)
    if problems:
        return 1
    import numpy
    print(f'[setup] pins hold: Python {sys.version.split()[0]}, numpy {numpy.__version__}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
