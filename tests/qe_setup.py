"""What the Quantum ESPRESSO tests share: the pseudo family, the job options and a small fcc cell."""

import numpy as np
from aiida import orm

from aiida_dielectrics.workflows.dfpt.qe.workchain import DfptQeWorkChain

FAMILY = 'PseudoDojo/0.4/PBE/SR/noCC/standard/upf'
#: Two MPI ranks as in CI; idle ranks yield the CPU, since busy-polling ranks starve each other on a shared machine.
OPTIONS = {
    'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2},
    'max_wallclock_seconds': 1800,
    'environment_variables': {'OMPI_MCA_mpi_yield_when_idle': '1'},
}


def fcc_binary(symbols, a, second=(0.5, 0.5, 0.5)):
    """Two-atom fcc primitive cell (rocksalt with the default second site)."""
    cell = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    structure = orm.StructureData(cell=cell.tolist())
    structure.append_atom(position=(0, 0, 0), symbols=symbols[0])
    structure.append_atom(position=(np.array(second) @ cell).tolist(), symbols=symbols[1])
    return structure


def builder_for(qe, structure, relax=False, **kwargs):
    """The fast-protocol builder with the shared family and options; ``qe`` is the (pw, ph) fixture.

    Without relaxation unless asked: most tests run at the equilibrium lattice already.
    """
    return DfptQeWorkChain.get_builder_from_protocol(
        structure,
        codes=dict(zip(('pw', 'ph'), qe, strict=True)),
        protocol='fast',
        potential_family=FAMILY,
        options=OPTIONS,
        relax=relax,
        **kwargs,
    )
