#!/usr/bin/env bash
# Set up this checkout on a Debian/Ubuntu machine: the Debian packages napari needs to draw
# under a real or virtual X server, a virtual environment (.venv) with PyTorch, and both
# distributions of this repository installed editable (medsegdiff-training from ./training
# with its `dicom` extra, napari-medsegdiff from . with its `all`, `testing` and `dev` extras:
# napari, pytest, ruff, mypy, tox).
#
# Safe to run again: it only does what is missing. Settings (environment variables):
#   MEDSEGDIFF_VENV         where the virtual environment lives        (default: ./.venv)
#   MEDSEGDIFF_QT           the Qt binding: pyqt5 (the `all` extra) or pyqt6 (the `pyqt6`
#                           extra); one binding per environment        (default: pyqt5)
#   PYTHON                  the interpreter that creates it, >= 3.10   (default: python3)
#   MEDSEGDIFF_TORCH        the torch requirement installed first      (default: torch==2.13.0)
#   MEDSEGDIFF_TORCH_INDEX  a pip index for torch, e.g. https://download.pytorch.org/whl/cpu
#                           for a CPU-only build on a machine whose pip would fetch a CUDA one
# torch is installed only when the environment has none, so an existing (CUDA) build is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MEDSEGDIFF_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_REQUIREMENT="${MEDSEGDIFF_TORCH:-torch==2.13.0}"
QT_BINDING="${MEDSEGDIFF_QT:-pyqt5}"
case "$QT_BINDING" in
    pyqt5) PLUGIN_EXTRAS="all,testing,dev" ;;
    pyqt6) PLUGIN_EXTRAS="pyqt6,testing,dev" ;;
    *)
        printf '[setup] MEDSEGDIFF_QT=%s is not a binding this project tests: use pyqt5 or pyqt6\n' "$QT_BINDING" >&2
        exit 1
        ;;
esac

# Qt's xcb platform plugin and vispy's OpenGL (Mesa llvmpipe) under Xvfb; xauth for xvfb-run.
APT_PACKAGES=(
    xvfb xauth libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0
    libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0
    libxcb-xinerama0 libxcb-xkb1 libxcb-randr0 libxcb-xfixes0 libxcb-cursor0
)

log() { printf '[setup] %s\n' "$*" >&2; }

is_installed() {
    # Ubuntu 24.04 renamed some libraries with a t64 suffix.
    local name
    for name in "$1" "$1t64"; do
        if dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed"; then
            return 0
        fi
    done
    return 1
}

install_debian_packages() {
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        log "not Debian/Ubuntu: install Xvfb, xauth, OpenGL and Qt's xcb libraries yourself"
        return 0
    fi
    local missing=() package
    for package in "${APT_PACKAGES[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            log "warning: missing Debian packages and no root rights to install them:"
            log "  apt-get install --no-install-recommends ${missing[*]}"
            return 0
        fi
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

create_venv() {
    if [ -x "$VENV/bin/python" ]; then
        return 0
    fi
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
        log "$PYTHON is $("$PYTHON" --version 2>&1); napari-medsegdiff needs Python >= 3.10 (set PYTHON=...)"
        exit 1
    }
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
}

install_torch() {
    if "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(not importlib.util.find_spec("torch"))'; then
        return 0
    fi
    local index=()
    if [ -n "${MEDSEGDIFF_TORCH_INDEX:-}" ]; then
        index=(--index-url "$MEDSEGDIFF_TORCH_INDEX")
    fi
    log "installing $TORCH_REQUIREMENT"
    "$VENV/bin/python" -m pip install -q "${index[@]}" "$TORCH_REQUIREMENT"
}

install_packages() {
    # Editable installs follow code changes; reinstall only when what pip reads changes.
    local stamp="$VENV/.napari-medsegdiff-setup" digest
    digest="$(cat "$ROOT/pyproject.toml" "$ROOT/training/pyproject.toml" "${BASH_SOURCE[0]}" \
        <(echo "$ROOT $QT_BINDING") | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    log "installing medsegdiff-training[dicom] and napari-medsegdiff[$PLUGIN_EXTRAS] (editable)"
    "$VENV/bin/python" -m pip install -q -e "$ROOT/training[dicom]" -e "$ROOT[$PLUGIN_EXTRAS]"
    echo "$digest" >"$stamp"
}

install_debian_packages
create_venv
install_torch
install_packages
log "ready: $VENV ($QT_BINDING, torch $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))'))"
