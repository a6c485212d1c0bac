"""Relaxations as provenance: the relaxed structure linked to its input, reasons kept, reuse by content."""

import pytest
from aiida.orm import CalcFunctionNode, Dict, QueryBuilder, StructureData
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.calculations import relax


def rocksalt_mgo(a: float) -> StructureData:
    cell = Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return StructureData(pymatgen=cell.get_primitive_structure())


def relax_processes() -> int:
    return (
        QueryBuilder()
        .append(CalcFunctionNode, filters={'attributes.process_label': 'relax_structures'})
        .count()
    )


def test_relaxations_are_linked_and_reused(aiida_profile_clean):
    polonium = StructureData(pymatgen=Structure(Lattice.cubic(3.35), ['Po'], [[0, 0, 0]]))
    found = relax.relax({'mgo': rocksalt_mgo(4.4), 'po': polonium}, threads=1)
    assert relax_processes() == 1
    mgo = found['mgo']
    result = mgo['results'].get_dict()
    assert result['reason'] is None and result['converged'] and result['potential'] == 'sevennet-0'
    assert result['formula'] == 'MgO' and result['composition'] == {'Mg': 1.0, 'O': 1.0}
    assert result['energy_mp'] < result['energy'] < 0
    process = mgo['relaxed'].creator
    assert process.inputs.structures.mgo.get_formula() == 'MgO'
    assert process.inputs.parameters.get_dict() == relax.settings()
    assert process.outputs.report.get_dict()['failed'] == {'po': 'unsupported element(s) for sevennet-0: Po'}
    assert 'relaxed' not in found['po'] and found['po']['results']['energy'] is None

    # A later campaign: new, unstored nodes with the same content find the stored relaxations.
    again = relax.relax({'first': rocksalt_mgo(4.4), 'other': polonium, 'new': rocksalt_mgo(4.3)})
    assert relax_processes() == 2  # only 'new' was relaxed
    assert again['first']['results'].uuid == mgo['results'].uuid
    assert again['first']['relaxed'].uuid == mgo['relaxed'].uuid
    assert again['other']['results'].uuid == found['po']['results'].uuid
    assert again['new']['relaxed'].creator.uuid != process.uuid
    # Other settings are another relaxation.
    relax.relax({'mgo': rocksalt_mgo(4.4)}, max_steps=3)
    assert relax_processes() == 3
    parameters = QueryBuilder().append(Dict, filters={'attributes.max_steps': 3}).one()[0]
    assert parameters.get_dict() == relax.settings(max_steps=3)


def test_unknown_potential_is_refused(aiida_profile_clean):
    with pytest.raises(ValueError, match='unknown potential'):
        relax.relax({'mgo': rocksalt_mgo(4.4)}, potential='mace')
