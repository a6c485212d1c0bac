"""Provenance of one batch: AiiDA's engine against :func:`aiida_dielectrics.tools.provenance.run_in_bulk`.

The same calcfunction (one ``dielectrics.prediction`` per stored structure, no ML, so only provenance is
timed) runs through the engine (``run_get_node``) and through ``run_in_bulk``, each in a fresh process on
its own new ``verdi presto`` (SQLite) profile; the structures are stored before the clock starts.

    python benchmarks/bench_provenance.py --n 500
"""

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from temporary_profile import run_step


def step(variant: str, count: int) -> dict:
    from aiida import load_profile
    from aiida.engine import calcfunction
    from aiida.orm import StructureData
    from pymatgen.core import Lattice, Structure

    load_profile()
    from aiida_dielectrics.data.prediction import PredictionData
    from aiida_dielectrics.tools.provenance import run_in_bulk

    @calcfunction
    def predict_batch(**structures):
        return {
            'predictions': {
                key: PredictionData(
                    formula=node.get_formula(),
                    band_gap=4.5,
                    diel_elec=3.0,
                    diel_ionic=6.9,
                    diel_ionic_std=0.5,
                )
                for key, node in structures['structures'].items()
            }
        }

    rocksalt = Structure.from_spacegroup(
        'Fm-3m', Lattice.cubic(4.21), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    structures = {f's{i}': StructureData(pymatgen=rocksalt).store() for i in range(count)}
    start = time.perf_counter()
    if variant == 'engine':
        outputs, _ = predict_batch.run_get_node(structures=structures)
    else:
        outputs, _ = run_in_bulk(predict_batch, structures=structures)
    seconds = time.perf_counter() - start
    assert len(outputs['predictions']) == count
    return {'seconds': seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=500, help='structures in the batch')
    parser.add_argument('--step', choices=['engine', 'bulk'], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.step:
        print(json.dumps(step(arguments.step, arguments.n)))
        return
    seconds = {
        variant: run_step(__file__, '--n', str(arguments.n), '--step', variant)['seconds']
        for variant in ('engine', 'bulk')
    }
    for variant, value in seconds.items():
        print(
            f'{variant:7s} {value:7.1f} s  {1000 * value / arguments.n:6.1f} ms per structure (2 links, 1 new node)'
        )
    print(f'speed-up {seconds["engine"] / seconds["bulk"]:6.1f}x')


if __name__ == '__main__':
    main()
