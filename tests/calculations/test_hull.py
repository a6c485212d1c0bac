"""Reference hulls as provenance: from a user's entries file, and the offline default with its reuse."""

import csv

import pytest
from aiida.orm import CalcFunctionNode, Dict, QueryBuilder, SinglefileData, StructureData
from monty.serialization import dumpfn
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from aiida_dielectrics.calculations import hull, relax
from aiida_dielectrics.calculations.imports import run_petousis2017_import


def result(composition: dict, energy_mp, potential='sevennet-0', reason=None) -> Dict:
    """A relaxation result as :func:`relax.relax_structures` stores it (the fields the hull reads)."""
    return Dict(
        {
            'composition': composition,
            'energy_mp': energy_mp,
            'potential': potential,
            'reason': reason,
            'mp_reason': None,
        }
    )


def test_hull_from_a_users_entries_file(aiida_profile_clean, tmp_path):
    """MP-style entries (ZnS 1 eV/atom below the elements) → rocksalt-like ZnS 0.3 above; no O → a reason."""
    path = tmp_path / 'mp-entries.json'
    dumpfn(
        [
            ComputedEntry('Zn', -1.0, entry_id='mp-79'),
            ComputedEntry('Zn2', -1.9, entry_id='mp-other'),  # a higher Zn polymorph
            ComputedEntry('S', -4.0, entry_id='mp-96'),
            ComputedEntry('ZnS', -7.5, correction=0.5, entry_id='mp-10695'),  # −3.5 eV/atom corrected
        ],
        path,
    )
    made = hull.hull_from_entries(SinglefileData(path))
    content = made.get_dict()
    assert content['source'] == 'entries' and content['energy_scale'] == 'MP2020'
    assert content['elements'] == {'Zn': 'mp-79', 'S': 'mp-96'} and content['filename'] == 'mp-entries.json'
    assert made.creator.inputs.entries.filename == 'mp-entries.json'

    candidates = {'rocksalt': result({'Zn': 1, 'S': 1}, -3.2), 'zno': result({'Zn': 1, 'O': 1}, -4.0)}
    outputs, process = hull.run_hull_energies(made, candidates)
    assert outputs['e_above_hull']['rocksalt'].value == pytest.approx(0.3)
    assert outputs['report'].get_dict()['missing'] == {'zno': 'no reference entry for element(s) O'}
    assert process.inputs.hull.uuid == made.uuid
    assert outputs['e_above_hull']['rocksalt'].creator.uuid == process.uuid


def petousis_subset(source, target, ids):
    """The rows of ``ids`` from the Petousis CSV (its ``# ref`` line and header kept)."""
    with open(source, newline='') as handle:
        first = handle.readline()
        reader = csv.DictReader(handle)
        rows = [row for row in reader if any(f"'{material_id}'" in row['meta'] for material_id in ids)]
        fields = reader.fieldnames
    with open(target, 'w', newline='') as handle:
        handle.write(first)
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return target


def relax_processes() -> int:
    return (
        QueryBuilder()
        .append(CalcFunctionNode, filters={'attributes.process_label': 'relax_structures'})
        .count()
    )


def test_default_hull_relaxes_known_structures_of_the_systems_once(
    aiida_profile_clean, petousis_csv, tmp_path
):
    """Zincblende ZnO (mp-1986) is known; CdS and Rb2Te are in other systems and stay out. Rocksalt ZnO
    sits above the default hull; a second campaign relaxes nothing again."""
    subset = petousis_subset(petousis_csv, tmp_path / 'subset.csv', ['mp-1986', 'mp-2469', 'mp-441'])
    assert run_petousis2017_import(subset)[0]['imported'] == 3
    known = hull.known_structures({frozenset({'Zn', 'O'})})
    assert [node.get_formula() for node in known.values()] == ['OZn']

    made = hull.build_default_hull(['ZnO'], threads=1)
    content = made.get_dict()
    assert content['source'] == 'default' and content['potential'] == 'sevennet-0'
    assert content['elements']['Zn'] == 'Zn_ase' and content['elements']['O'].startswith('O_molecul')
    ids = [row['entry_id'] for row in content['entries']]
    assert len(ids) == 3 and any(entry_id.endswith('mp_1986') for entry_id in ids)
    processes = relax_processes()
    assert processes == 3  # element crystals, the O2 molecule (fixed cell), the known structure

    rocksalt = Structure.from_spacegroup(
        'Fm-3m', Lattice.cubic(4.28), ['Zn', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    candidate = relax.relax({'rocksalt': StructureData(pymatgen=rocksalt.get_primitive_structure())})
    outputs, _ = hull.run_hull_energies(made, {'rocksalt': candidate['rocksalt']['results']})
    assert 0.05 < outputs['e_above_hull']['rocksalt'].value < 0.3  # SevenNet-0: ~0.13 above zincblende

    again = hull.build_default_hull(['ZnO'])
    assert relax_processes() == processes + 1  # only the candidate was new
    assert again.uuid != made.uuid and again.get_dict()['entries'] == content['entries']

    chgnet = result({'Zn': 1, 'O': 1}, -5.0, potential='chgnet')
    outputs, _ = hull.run_hull_energies(made, {'other': chgnet})
    assert outputs['report'].get_dict()['missing'] == {
        'other': 'relaxed with chgnet, the hull with sevennet-0'
    }
