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


def run_cli(main: Callable[[], object], program: str) -> None:
    """Run ``main``; a :class:`UserError` (also one raised in a data-loader worker) becomes one stderr line and exit
    status 1, unless a traceback was asked for (:func:`debug_requested`)."""
    try:
        main()
    except UserError as error:
        if debug_requested():
            raise
        print(f'{program}: error: {error_line(error)}', file=sys.stderr)
        sys.exit(1)
