"""A real VASP-relaxed cell through the QE engine: ``python benchmarks/dfpt_vasp_cell.py [VASPRUN]``.

Default: the wurtzite AlN of ``shared/fixtures/vasp/AlN-wurtzite-dfpt``, whose unsymmetrised cell stops
ph.x with ``divide_class``. Runs symmetrise → vc-relax → scf → ph.x (``--protocol``, 2 MPI ranks) on a
throw-away profile and prints ε∞ and ε_ion next to VASP's own values from the same ``vasprun.xml``.
"""

import argparse
import os
import pathlib
import tempfile
import time

import numpy as np
from bench_dfpt import FAMILY, SHARED, prepare_profile


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = SHARED / 'fixtures' / 'vasp' / 'AlN-wurtzite-dfpt' / 'vasprun.xml'
    parser.add_argument('vasprun', nargs='?', type=pathlib.Path, default=default)
    parser.add_argument('--protocol', default='fast', choices=('fast', 'moderate', 'precise'))
    arguments = parser.parse_args()
    os.environ.setdefault('AIIDA_PATH', tempfile.mkdtemp(prefix='aiida-bench-vasp-cell-'))

    from aiida import orm
    from aiida.engine import run_get_node
    from pymatgen.io.vasp import Vasprun

    from aiida_dielectrics.workflows.dfpt import load_engine

    vasp = Vasprun(str(arguments.vasprun), parse_potcar_file=False, parse_dos=False, parse_eigen=False)
    codes = prepare_profile()
    builder = load_engine('qe').get_builder_from_protocol(
        orm.StructureData(pymatgen=vasp.final_structure),
        codes=codes,
        protocol=arguments.protocol,
        potential_family=FAMILY,
        options={
            'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2},
            'max_wallclock_seconds': 7200,
        },
    )
    start = time.perf_counter()
    results, node = run_get_node(builder)
    print(
        f'{node.process_label}<{node.pk}> exit status {node.exit_status} after {time.perf_counter() - start:.0f} s'
    )
    if node.is_finished_ok:
        dielectric = results['dielectric']
        print(
            'ε∞ QE  ',
            np.diag(dielectric.epsilon_electronic).round(3),
            ' VASP',
            np.diag(vasp.epsilon_static).round(3),
        )
        print(
            'ε_ion QE',
            np.diag(dielectric.epsilon_ionic).round(3),
            ' VASP',
            np.diag(vasp.epsilon_ionic).round(3),
        )


if __name__ == '__main__':
    main()
