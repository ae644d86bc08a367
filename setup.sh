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
.venv/bin/python -m normconf list >/dev/null
echo "normconf: set-up done (.venv). Run: .venv/bin/pytest"
