#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite, GUI tests included, under a virtual X
# server: the whole suite under PyQt5 (.venv); the tests whose outcome depends on the CPU's
# precision policy (marked precision_policy) again under the policy of a CPU with native
# bfloat16 (--cpu-bf16=native: autocast computes bfloat16 in software where the CPU lacks it),
# so that CI checks what AMX / AVX512-BF16 machines run; then the GUI tests under PyQt6 in a
# second environment (.venv-pyqt6), so the plugin keeps working on both bindings.
#
#   bash scripts/test.sh                      the three passes, as CI runs them
#   bash scripts/test.sh -m "not slow"        arguments go to pytest: PyQt5 pass only
#   MEDSEGDIFF_QT=pyqt6 bash scripts/test.sh  the GUI tests (or the arguments) under PyQt6 only
#
# Variables: MEDSEGDIFF_VENV (the PyQt5 environment, default .venv), MEDSEGDIFF_PYQT6_VENV
# (default .venv-pyqt6), MEDSEGDIFF_SKIP_PYQT6=1 (no PyQt6 pass), MEDSEGDIFF_SKIP_BF16=1
# (no bfloat16-policy pass).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYQT5_VENV="${MEDSEGDIFF_VENV:-$ROOT/.venv}"
PYQT6_VENV="${MEDSEGDIFF_PYQT6_VENV:-$ROOT/.venv-pyqt6}"
# The tests that draw or import Qt; the rest of the suite does not depend on the binding.
GUI_TESTS=(tests/plugin tests/test_quickstart.py)

run_pytest() { # binding venv pytest-arguments...
    local binding="$1" venv="$2"
    shift 2
    MEDSEGDIFF_QT="$binding" MEDSEGDIFF_VENV="$venv" bash "$ROOT/scripts/setup.sh"
    local pytest=(env QT_API="$binding" "$venv/bin/python" -m pytest --durations=15 "$@")
    printf '[test] %s (%s): pytest %s\n' "$binding" "$venv" "$*" >&2
    if command -v xvfb-run >/dev/null; then
        # 24-bit colour: the default 8-bit screen gives vispy a poor OpenGL visual.
        xvfb-run -a -s "-screen 0 1600x1200x24" "${pytest[@]}"
    elif [ -n "${DISPLAY:-}" ]; then
        "${pytest[@]}"
    else
        echo "xvfb-run not found and no DISPLAY: install the xvfb and xauth Debian packages" >&2
        return 1
    fi
}

cd "$ROOT"
if [ "${MEDSEGDIFF_QT:-}" = pyqt6 ]; then
    if [ "$#" -eq 0 ]; then set -- "${GUI_TESTS[@]}"; fi
    run_pytest pyqt6 "$PYQT6_VENV" "$@"
elif [ "$#" -gt 0 ]; then
    run_pytest pyqt5 "$PYQT5_VENV" "$@"
else
    run_pytest pyqt5 "$PYQT5_VENV"
    if [ "${MEDSEGDIFF_SKIP_BF16:-0}" != 1 ]; then
        start=$SECONDS
        run_pytest pyqt5 "$PYQT5_VENV" -m precision_policy --cpu-bf16=native
        printf '[test] bfloat16-policy pass: %d s\n' "$((SECONDS - start))" >&2
    fi
    if [ "${MEDSEGDIFF_SKIP_PYQT6:-0}" != 1 ]; then
        start=$SECONDS
        run_pytest pyqt6 "$PYQT6_VENV" "${GUI_TESTS[@]}"
        printf '[test] PyQt6 pass (set-up included): %d s\n' "$((SECONDS - start))" >&2
    fi
fi
