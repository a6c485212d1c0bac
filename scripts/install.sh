#!/usr/bin/env bash
# Install everything aiida-dielectrics needs on a fresh Debian machine with Python >= 3.10 and pip.
# Idempotent: re-running installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# Debian packages: Quantum ESPRESSO (pw.x, ph.x) for DFPT; headless Chromium renders the Pareto-front
# HTML in tests/test_plot.py.
missing=()
command -v pw.x >/dev/null && command -v ph.x >/dev/null || missing+=(quantum-espresso)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PIP="python -m pip install -q --disable-pip-version-check --root-user-action=ignore"
# The CPU build of torch first: an unpinned torch (e.g. pulled in by matgl) would be a multi-GB CUDA build.
$PIP torch==2.13.0
$PIP -e ".[dev,docs]"
# pyenv users: shims for the new commands in their own shells (the scripts here do not need them).
if command -v pyenv >/dev/null; then
    PYENV_REHASH_TIMEOUT=5 pyenv rehash 2>/dev/null || echo "note: 'pyenv rehash' failed; run it to get the commands in a new shell" >&2
fi
