"""The one error type and the one reporter of every entry point (train.py, test.py, image_demo.py, get_flops.py,
deploy.py, tools/*.py).

A problem with the user's input (a config, a data file, a checkpoint, an argument, the disk) is raised as
:class:`UserError` with a message that names the file, field or argument. :func:`run_cli` prints it as one line,
``<program>: error: <message>``, on stderr and exits with status 1 - no traceback. ``--debug`` on the command line or
``INTERNIMAGE_DEBUG=1`` in the environment shows the full traceback instead. Anything that is not a ``UserError`` is
a bug and keeps its traceback.

This module imports nothing heavy, so the stack check (``mmcv_custom.stack_check.StackError``) and the mmdeploy check
can raise a ``UserError`` too.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

DEBUG_ENV = 'INTERNIMAGE_DEBUG'
DEBUG_FLAG = '--debug'


class UserError(Exception):
    """A problem with the user's input (config, data, checkpoint, arguments, disk): one line, exit status 1."""


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """``--debug``: show the traceback of an error instead of the one-line message (same as INTERNIMAGE_DEBUG=1)."""
    parser.add_argument(DEBUG_FLAG, action='store_true',
                        help=f'show the full traceback of an error instead of one line (or set {DEBUG_ENV}=1)')


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, '') not in ('', '0')


def error_line(error: BaseException) -> str:
    """The one line to print for ``error``.

    A ``UserError`` raised in a DataLoader worker is re-raised by torch under the same type, with the worker's
    traceback as its message; the message proper is then the last line (``<module>.UnreadableImageError: <message>``).
    """
    text = str(error)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and 'Traceback' in text:
        return lines[-1].split('Error: ', 1)[-1]
    return lines[0] if lines else type(error).__name__


INTERRUPTED_STATUS = 130  # the shell's status for a process stopped by SIGINT (128 + 2)


def run_cli(main: Callable[[], object], program: str) -> None:
    """Run ``main``; a :class:`UserError` (also one raised in a data-loader worker) becomes one stderr line and exit
    status 1, Ctrl-C one line and status 130, unless a traceback was asked for (:func:`debug_requested`)."""
    try:
        main()
    except UserError as error:
        if debug_requested():
            raise
        print(f'{program}: error: {error_line(error)}', file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if debug_requested():
            raise
        # checkpoints are written atomically: the last one saved is complete (--auto-resume continues from it)
        print(f'{program}: interrupted', file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)


# ----------------------------------------------------------------------------------------------------------
# Argument checks shared by the Python entry points and the shell launchers (dist_train.sh, dist_test.sh call
# ``python mmcv_custom/cli/errors.py PROGRAM NAME=VALUE...`` before torchrun; this module imports nothing heavy).
# ----------------------------------------------------------------------------------------------------------

CONFIG_SUFFIXES = ('.py', '.json', '.yaml', '.yml')


def check_config_path(path: str, field: str = 'config file') -> None:
    """Raise :class:`UserError` unless ``path`` is an existing config file of a format mmcv reads."""
    if not os.path.isfile(path):
        raise UserError(f'{field} {path} does not exist')
    if os.path.splitext(path)[1] not in CONFIG_SUFFIXES:
        raise UserError(f'{field} {path}: expected a .py, .json or .yaml file')


def check_positive_int(name: str, value: str) -> int:
    """``value`` as a positive integer, else :class:`UserError` (``GPUS=abc: expected a positive integer``)."""
    if not value.isdigit() or int(value) <= 0:
        raise UserError(f'{name}={value}: expected a positive integer')
    return int(value)


def check_file_path(name: str, path: str) -> None:
    """An existing file (URLs are left to the loaders)."""
    if '://' not in path and not os.path.isfile(path):
        raise UserError(f'{name} {path} does not exist')


# Launcher arguments that are files; every other NAME=VALUE (GPUS, NNODES, GPUS_PER_NODE, ...) is a count.
LAUNCHER_FILES: dict[str, Callable[[str], None]] = {
    'CONFIG': check_config_path,
    'CHECKPOINT': lambda value: check_file_path('checkpoint', value),
}


def check_launcher_args(program: str, items: Sequence[str]) -> int:
    """Check the launcher arguments ``NAME=VALUE`` (a file of :data:`LAUNCHER_FILES`, else a positive integer); 0
    when all are fine, else one line ``<program>: error: ...`` and 2 (the status of argparse errors)."""
    try:
        for item in items:
            name, _, value = item.partition('=')
            if name in LAUNCHER_FILES:
                LAUNCHER_FILES[name](value)
            else:
                check_positive_int(name, value)
    except UserError as error:
        print(f'{program}: error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':  # python mmcv_custom/cli/errors.py dist_train.sh CONFIG=... GPUS=...
    sys.exit(check_launcher_args(sys.argv[1], sys.argv[2:]))
