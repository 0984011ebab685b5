#!/usr/bin/env bash
# Run pip with the given arguments, drop one known line of noise, and exit with pip's own status.
#
# The machines' pip configuration lists local package folders that do not all exist, so pip prints
# "WARNING: Location ... is ignored" lines. Filtering them must never hide a failed install: the filter always
# succeeds, and the script exits with pip's status (PIPESTATUS), so `make setup` stops at a failed install with
# pip's own message on the terminal.
#
# usage: tools/install/pip_quiet.sh PYTHON PIP_ARGS...
set -uo pipefail

PYTHON=${1:?usage: pip_quiet.sh PYTHON PIP_ARGS...}
shift
"$PYTHON" -m pip --disable-pip-version-check "$@" 2>&1 | { grep -v "WARNING: Location" || true; }
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    echo "[pip] 'pip $*' failed with exit status $status" >&2
fi
exit "$status"
