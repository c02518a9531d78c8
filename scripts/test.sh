#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, GUI tests included, under a virtual
# X server. Arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow" tests/training`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MEDSEGDIFF_VENV:-$ROOT/.venv}"

bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
PYTEST=("$VENV/bin/python" -m pytest --durations=15 "$@")
if command -v xvfb-run >/dev/null; then
    # 24-bit colour: the default 8-bit screen gives vispy a poor OpenGL visual.
    exec xvfb-run -a -s "-screen 0 1600x1200x24" "${PYTEST[@]}"
elif [ -n "${DISPLAY:-}" ]; then
    exec "${PYTEST[@]}"
else
    echo "xvfb-run not found and no DISPLAY: install the xvfb and xauth Debian packages" >&2
    exit 1
fi
