"""Import speed of the Petousis CSV: per-node commits (AiiDA's default) against one transaction.

Both variants import the same rows in the same run, each in a fresh ``verdi presto`` (SQLite)
profile, so their ratio is meaningful on a noisy machine.

    python benchmarks/bench_import.py ../shared/data/petousis2017/dielectric_constant.csv [--rows 1056]
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

from temporary_profile import run_step


def first_rows(path: pathlib.Path, rows: int, folder: str) -> pathlib.Path:
    """A copy of the CSV with its first ``rows`` rows (one row per line in this file)."""
    lines = path.read_text().splitlines(keepends=True)
    subset = pathlib.Path(folder) / 'subset.csv'
    subset.write_text(''.join(lines[: rows + 2]))
    return subset


def time_import(csv_path: str, variant: str) -> float:
    """Seconds to import ``csv_path`` into the loaded (empty) profile."""
    from aiida import load_profile

    load_profile()
    from aiida.orm import List, SinglefileData

    from aiida_dielectrics.calculations.imports import import_petousis2017, run_petousis2017_import

    start = time.perf_counter()
    if variant == 'transaction':
        run_petousis2017_import(csv_path)
    else:
        import_petousis2017.run_get_node(SinglefileData(file=csv_path), List([]))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('csv', type=pathlib.Path)
    parser.add_argument('--rows', type=int, default=1056)
    parser.add_argument('--variant', choices=('per-node', 'transaction'), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.variant:
        print(json.dumps({'seconds': time_import(str(arguments.csv.resolve()), arguments.variant)}))
        return
    with tempfile.TemporaryDirectory() as folder:
        subset = str(first_rows(arguments.csv.resolve(), arguments.rows, folder))
        seconds = {
            variant: run_step(__file__, subset, '--variant', variant)['seconds']
            for variant in ('per-node', 'transaction')
        }
    print(f'rows imported: {arguments.rows} (a StructureData and a DielectricData each)')
    for variant, elapsed in seconds.items():
        print(f'{variant:12s}: {elapsed:6.1f} s  {arguments.rows / elapsed:6.1f} rows/s')
    print(f'speed-up of one transaction: {seconds["per-node"] / seconds["transaction"]:.2f}x')


if __name__ == '__main__':
    sys.exit(main())
