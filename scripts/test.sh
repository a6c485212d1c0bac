#!/usr/bin/env bash
# Install, start PostgreSQL and RabbitMQ if they are not running, then run the whole test suite, the
# linters and the documentation build (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export AIIDA_DIELECTRICS_SHARED=${AIIDA_DIELECTRICS_SHARED:-$(cd .. && pwd)/shared}

bash scripts/install.sh
bash scripts/services.sh  # PostgreSQL and RabbitMQ for the production-profile tests (-m production)
ruff check .
ruff format --check .
# One worker per core, each test file on one worker (its module-scoped fixtures run once): the real QE
# runs, subprocesses and single-threaded tests overlap.
python -m pytest -p no:cacheprovider -q -n auto --dist loadfile --durations=10
python -m sphinx -W --keep-going -q -b html docs docs/_build/html
