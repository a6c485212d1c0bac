"""Import speed of the Petousis CSV: the engine (per-node commits, or one transaction) against the
importer's bulk provenance (``run_in_bulk`` in one transaction).

All variants import the same rows in the same run, each in a fresh ``verdi presto`` (SQLite)
profile, so their ratios are meaningful on a noisy machine.

    python benchmarks/bench_import.py ../shared/data/petousis2017/dielectric_constant.csv [--rows 1056]
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

from temporary_profile import run_step

VARIANTS = ('per-node', 'transaction', 'bulk')


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
    from aiida.manage import get_manager
    from aiida.orm import List, SinglefileData

    from aiida_dielectrics.calculations.imports import import_petousis2017, run_petousis2017_import

    start = time.perf_counter()
    if variant == 'bulk':
        run_petousis2017_import(csv_path)
    elif variant == 'transaction':
        with get_manager().get_profile_storage().transaction():
            import_petousis2017.run_get_node(SinglefileData(file=csv_path), List([]))
    else:
        import_petousis2017.run_get_node(SinglefileData(file=csv_path), List([]))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('csv', type=pathlib.Path)
    parser.add_argument('--rows', type=int, default=1056)
    parser.add_argument('--variant', choices=VARIANTS, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.variant:
        print(json.dumps({'seconds': time_import(str(arguments.csv.resolve()), arguments.variant)}))
        return
    with tempfile.TemporaryDirectory() as folder:
        subset = str(first_rows(arguments.csv.resolve(), arguments.rows, folder))
        seconds = {
            variant: run_step(__file__, subset, '--variant', variant)['seconds'] for variant in VARIANTS
        }
    print(f'rows imported: {arguments.rows} (a StructureData and a DielectricData each)')
    for variant, elapsed in seconds.items():
        print(f'{variant:12s}: {elapsed:6.1f} s  {arguments.rows / elapsed:6.1f} rows/s')
    for variant in VARIANTS[1:]:
        print(f'speed-up of {variant} over per-node: {seconds["per-node"] / seconds[variant]:.2f}x')


if __name__ == '__main__':
    sys.exit(main())
