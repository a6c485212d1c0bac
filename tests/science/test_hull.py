"""Hulls against an explicit reference: entries files, candidates included or not, formation energies."""

import json
import math

import numpy as np
import pytest
from monty.serialization import dumpfn
from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from aiida_dielectrics.science import hull

#: A Zn–S reference (eV per atom): the elements and zincblende ZnS 1 eV/atom below them.
ZN, S, ZNS = -1.0, -4.0, -3.5


def reference():
    return [
        ComputedEntry('Zn', ZN, entry_id='zn'),
        ComputedEntry('S8', 8 * S, entry_id='s'),
        ComputedEntry('Zn2S2', 4 * ZNS, entry_id='zns'),
    ]


def test_candidates_against_a_reference():
    """Rocksalt ZnS 0.3 eV/atom above zincblende; ZnS2 against ZnS + S; a Zn–O candidate has no O."""
    values, reasons = hull.e_above_hull_many(
        reference(), ['ZnS', 'ZnS2', 'ZnO', 'ZnS'], [ZNS + 0.3, -3.7, -3.0, math.nan]
    )
    zns2_hull = (2 * ZNS + S) / 3  # ZnS + S, per atom of ZnS2
    assert values[0] == pytest.approx(0.3)
    assert values[1] == pytest.approx(-3.7 - zns2_hull)
    assert math.isnan(values[2]) and reasons[2] == 'no reference entry for element(s) O'
    assert math.isnan(values[3]) and reasons[3] == 'no energy'
    assert reasons[:2] == [None, None]


def test_candidates_compete_with_each_other_unless_excluded():
    """Two ZnS candidates below zincblende: the lower is below the hull of all else, the other above it."""
    energies = [ZNS - 0.2, ZNS - 0.1]
    together, _ = hull.e_above_hull_many(reference(), ['ZnS', 'ZnS'], energies)
    assert together == pytest.approx([-0.1, 0.1])
    alone, _ = hull.e_above_hull_many(reference(), ['ZnS', 'ZnS'], energies, include_candidates=False)
    assert alone == pytest.approx([-0.2, -0.1])


def test_formation_energies_need_an_explicit_reference():
    """The formation-energy scale puts elements at 0; the self-hull is one explicit choice, not a default."""
    compositions, e_form = ['ZnS', 'ZnS', 'Zn3S'], [-1.0, -0.8, -0.1]
    known = hull.entries_from_formation_energies(['ZnS'], [-0.9])
    assert hull.e_above_hull(compositions, e_form, known) == pytest.approx([-0.1, 0.1, -0.1 + 0.9 / 2])
    own = hull.entries_from_formation_energies(compositions, e_form)
    np.testing.assert_allclose(hull.e_above_hull(compositions, e_form, own), [0.0, 0.2, 0.4])
    with pytest.raises(TypeError):
        hull.e_above_hull(compositions, e_form)  # no default reference


def test_load_entries_reads_what_mp_api_users_save(tmp_path):
    """``dumpfn`` of ComputedEntry / ComputedStructureEntry objects, and plain dicts, round-trip."""
    zns = Structure.from_spacegroup('F-43m', Lattice.cubic(5.4), ['Zn', 'S'], [[0, 0, 0], [0.25, 0.25, 0.25]])
    entries = [*reference()[:2], ComputedStructureEntry(zns, 8 * ZNS, correction=-0.5, entry_id='mp-10695')]
    path = tmp_path / 'entries.json'
    dumpfn(entries, path)
    loaded = hull.load_entries(path)
    assert [type(entry) for entry in loaded] == [ComputedEntry, ComputedEntry, ComputedStructureEntry]
    assert loaded[2].energy == pytest.approx(8 * ZNS - 0.5)  # the correction is part of the energy
    plain = tmp_path / 'plain.json'
    plain.write_text(json.dumps({'entries': [{'composition': {'Zn': 1}, 'energy': ZN, 'entry_id': 'zn'}]}))
    assert hull.load_entries(plain)[0].energy == ZN
    rows = hull.entries_to_rows(loaded)
    assert rows[2] == {'entry_id': 'mp-10695', 'composition': {'Zn': 4.0, 'S': 4.0}, 'energy': 8 * ZNS - 0.5}
    back = hull.entries_from_rows(rows)
    assert [entry.energy for entry in back] == [entry.energy for entry in loaded]


@pytest.mark.parametrize(
    ('content', 'message'),
    [
        ('not json', 'is not a readable JSON file'),
        ('{"entries": []}', 'holds no list of entries'),
        ('[{"composition": {"Zn": 1}}]', 'entry 0 is not a pymatgen entry'),
        ('[{"@module": "pymatgen.core.structure", "@class": "Molecule", "species": [], "sites": []}]',
         'entry 0 is not a pymatgen entry'),
    ],
)  # fmt: skip
def test_bad_entries_files_are_refused(tmp_path, content, message):
    path = tmp_path / 'bad.json'
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        hull.load_entries(path)


def test_fetching_from_mp_says_what_is_missing(monkeypatch):
    monkeypatch.delenv('MP_API_KEY', raising=False)
    with pytest.raises(RuntimeError, match='set MP_API_KEY'):
        hull.fetch_mp_entries(['Zn', 'S'])
    try:
        import mp_api  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r'pip install "aiida-dielectrics\[mp\]"'):
            hull.fetch_mp_entries(['Zn', 'S'], api_key='x' * 32)


def test_systems():
    systems = hull.chemical_systems(['ZnS', 'CdSe', PDEntry('Zn', 0).composition])
    assert systems == {frozenset({'Zn', 'S'}), frozenset({'Cd', 'Se'}), frozenset({'Zn'})}
    assert hull.in_systems({'Zn'}, systems) and hull.in_systems({'Se'}, systems)
    assert not hull.in_systems({'Zn', 'Se'}, systems)
