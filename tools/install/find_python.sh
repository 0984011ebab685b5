#!/usr/bin/env bash
# Print the absolute path of a working Python interpreter given as a path or a command name (python3.12, python3).
#
# A name is tried as a command first; where that fails (a pyenv shim answers "command not found" for a version
# that is installed but not selected), the matching pyenv installation (`$(pyenv root)/versions/3.12.*`) is used.
# Stops with one line naming what was tried, so `make setup PYTHON=...` fails before creating anything.
#
# usage: tools/install/find_python.sh PYTHON
set -euo pipefail

want=${1:?usage: find_python.sh PYTHON}
probe='import sys; print(sys.executable)'

if exe=$("$want" -c "$probe" 2>/dev/null) && [ -n "$exe" ]; then
    echo "$exe"
    exit 0
fi
# pythonX.Y through pyenv, when the shim does not select that version.
if [[ $(basename "$want") =~ ^python([0-9]+\.[0-9]+)$ ]] && command -v pyenv >/dev/null; then
    minor=${BASH_REMATCH[1]}
    for candidate in "$(pyenv root)"/versions/"$minor".*/bin/python"$minor"; do
        if [ -x "$candidate" ] && exe=$("$candidate" -c "$probe" 2>/dev/null); then
            echo "$exe"
            exit 0
        fi
    done
fi
echo "find_python.sh: no working Python '$want' (tried it as a command and among pyenv's versions);" \
     "pass PYTHON=/path/to/python3.X" >&2
exit 1
