"""Provenance around candidate generation: the calcfunction, its port validator, groups and files."""

import pytest
from aiida.orm import CalcFunctionNode, Dict, Group, QueryBuilder, StructureData

from aiida_dielectrics.calculations.candidates import (
    generate_candidates,
    structures_from_files,
    structures_from_group,
    user_candidates,
)
from aiida_dielectrics.tools.provenance import run_in_bulk
from tests.science.test_candidates import perovskite, rocksalt


def test_calcfunction_records_seeds_and_parameters(aiida_profile_clean):
    mgo = StructureData(pymatgen=rocksalt())
    results, node = generate_candidates.run_get_node(
        parameters=Dict({'max_candidates': 3, 'exclude_formulas': ['CdO']}), mgo=mgo
    )
    assert node.is_finished_ok
    assert sorted(results['structures']) == ['candidate_0000', 'candidate_0001', 'candidate_0002']
    report = results['report'].get_dict()
    assert [entry['formula'] for entry in report['candidates'].values()] == ['MnO', 'ZnO', 'FeO']
    assert report['rejected'] == {'in_reference': 1}
    first = results['structures']['candidate_0000']
    assert first.creator.uuid == node.uuid
    assert node.inputs.mgo.uuid == mgo.uuid
    assert report['candidates']['candidate_0000']['substitutions'] == [['Mg2+', 'Mn2+']]

    count = QueryBuilder().append(CalcFunctionNode).count()
    with pytest.raises(ValueError, match=r'invalid parameters: threshold must be in \(0, 1\), got 2'):
        generate_candidates.run_get_node(parameters=Dict({'threshold': 2}), mgo=mgo)
    with pytest.raises(ValueError, match='invalid parameters: unknown parameters max_candidate'):
        run_in_bulk(generate_candidates, parameters=Dict({'max_candidate': 2}), mgo=mgo)
    assert QueryBuilder().append(CalcFunctionNode).count() == count  # refused before any node was made


def test_group_and_files_as_candidates(aiida_profile_clean, tmp_path):
    group = Group('user-structures').store()
    nodes = [
        StructureData(pymatgen=structure).store() for structure in (rocksalt(), rocksalt(4.3), perovskite())
    ]
    group.add_nodes(nodes)
    structures = structures_from_group('user-structures')
    kept, rejected = user_candidates(structures)
    assert sorted(kept) == sorted(f's{node.pk}' for node in (nodes[0], nodes[2]))
    assert rejected == {'duplicate': 1}
    with pytest.raises(ValueError, match='no group'):
        structures_from_group('missing')

    path = tmp_path / '1-MgO.cif'
    rocksalt().to(filename=str(path))
    assert list(structures_from_files([str(path)])) == ['s_1_MgO_cif']
