#!/usr/bin/env bash
# Prepares a fresh Debian machine for SuperTiny and is safe to run again (it skips what is done):
# clang (tinygrad's CPU backend compiles its kernels with it) and a virtual environment in .venv holding the
# package with its test-only extras (PyTorch CPU build, scikit-image, TensorBoard and rasterio: the independent
# references the tests compare against).
set -euo pipefail
cd "$(dirname "$0")"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_ready=""
apt_install() {
  [ -n "$apt_ready" ] || { as_root apt-get update -qq; apt_ready=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v clang >/dev/null || apt_install clang
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  # torch is pinned to the CPU build in pyproject.toml; an unpinned torch would pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import supertiny, torch, skimage" && touch .venv/.installed
fi
