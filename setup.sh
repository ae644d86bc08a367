#!/usr/bin/env bash
# Set-up for normconf: a virtual environment in .venv with every CPU framework the suite compares.
# Safe to run again (pip skips what is already installed). Needs Python 3.11 and PyPI.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet -r requirements.txt
# labml-nn's metadata asks for torchvision/torchtext builds we do not want; its modules need only torch.
.venv/bin/python -m pip install --quiet --no-deps labml-nn==0.5.1
# normconf itself, editable: `normconf` and `adapters` import from anywhere (xdist workers, your
# own adapter packages), and the `normconf` command exists
.venv/bin/python -m pip install --quiet --no-deps -e .
# torch.compile (the torch-compile adapter) builds its CPU kernels with a C++ compiler: Debian's g++.
# Without one that adapter is unavailable and says why.
if ! command -v g++ >/dev/null && ! command -v c++ >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null) \
      || echo "setup: g++ not installed; the torch-compile adapter will be unavailable" >&2
  else
    echo "setup: not root (or no apt-get): g++ not installed; the torch-compile adapter will be unavailable" >&2
  fi
fi
# Optional: Debian's Chromium for the HTML report's browser test (never a downloaded browser).
# Needs root and apt; without it that test skips and says why.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "setup: chromium not installed; the browser tests will skip" >&2
  else
    echo "setup: not root (or no apt-get): chromium not installed; the browser tests will skip" >&2
  fi
fi
.venv/bin/python -m normconf list >/dev/null
echo "normconf: set-up done (.venv). Run: .venv/bin/pytest"
