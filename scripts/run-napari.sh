#!/usr/bin/env bash
# Set up (scripts/setup.sh) and start napari with a sample image and the MedSegDiff widget.
# Arguments go to `python -m napari_medsegdiff`; `--screenshot PATH` saves a picture of the
# window and quits, and works on a machine without a display (through xvfb-run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MEDSEGDIFF_VENV:-$ROOT/.venv}"

bash "$ROOT/scripts/setup.sh"
LAUNCH=("$VENV/bin/python" -m napari_medsegdiff "$@")
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    exec "${LAUNCH[@]}"
elif [[ " $* " == *" --screenshot "* ]] && command -v xvfb-run >/dev/null; then
    exec xvfb-run -a -s "-screen 0 1600x1200x24" "${LAUNCH[@]}"
else
    echo "No display (DISPLAY is not set): run this on a desktop, or over 'ssh -X'." >&2
    echo "Headless check: bash scripts/run-napari.sh --screenshot napari.png" >&2
    exit 1
fi
