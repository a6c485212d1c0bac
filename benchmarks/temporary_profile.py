"""Run a benchmark step in a fresh process on a throw-away ``verdi presto`` profile (SQLite).

Each step gets its own empty database, as a new user's embedded default would be, so variants timed
in one run start from the same state.
"""

import json
import os
import subprocess
import sys
import tempfile


def run_step(script: str, *arguments: str) -> dict:
    """Run ``python script *arguments`` with ``AIIDA_PATH`` on a new presto profile; return its JSON output."""
    with tempfile.TemporaryDirectory(prefix='aiida-bench-') as folder:
        environment = {**os.environ, 'AIIDA_PATH': folder}
        presto = ['verdi', 'presto', '--no-broker', '--non-interactive']
        subprocess.run(presto, env=environment, check=True, capture_output=True)
        result = subprocess.run(
            [sys.executable, script, *arguments], env=environment, check=False, capture_output=True, text=True
        )
    if result.returncode != 0:
        raise SystemExit(f'benchmark step failed:\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])
