"""``predict --relax`` as a user runs it (relaxed structures written, E_hull against the user's entries),
and its bad input refused with one line."""

import json
import pathlib

import pandas as pd
import pytest
from monty.serialization import dumpfn
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

#: Element energies (eV/atom) of the user's entries, near MP's; no compound: E_hull is then the relaxed
#: energy (MP2020 scale) minus the mean of its elements'.
ELEMENTS = {'Ca': -2.0, 'Sr': -1.7, 'O': -4.95}


def rocksalt(cation, anion, a):
    cell = Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return cell.get_primitive_structure()


def test_predict_relax_writes_relaxed_structures_and_e_hull(user_shell):
    inputs = user_shell.home / 'to-relax'
    inputs.mkdir()
    strained = {'CaO': rocksalt('Ca', 'O', 5.0), 'SrO': rocksalt('Sr', 'O', 5.4)}  # ~4.8 and ~5.2 Å relaxed
    for name, structure in strained.items():
        structure.to(filename=str(inputs / f'{name}.cif'))
    entries = user_shell.home / 'entries.json'
    dumpfn(
        [ComputedEntry(symbol, energy, entry_id=f'user-{symbol}') for symbol, energy in ELEMENTS.items()],
        entries,
    )
    relaxed = user_shell.home / 'relaxed'
    result = user_shell.run(
        'aiida-dielectrics',
        'predict',
        inputs,
        '--relax',
        '--potential',
        'chgnet',  # the faster one to load; SevenNet-0 is tested in tests/calculations
        '--hull-entries',
        entries,
        '--relaxed-dir',
        relaxed,
        '--store',
        '-o',
        'relaxed.csv',
    )
    assert result.returncode == 0, result.stderr
    assert 'relaxed 2 of 2; E_hull of 2 against the entries hull' in result.stderr
    assert '2 of 2 structures predicted -> relaxed.csv' in result.stderr
    table = pd.read_csv(user_shell.home / 'relaxed.csv').set_index('file')
    for name, structure in strained.items():
        row = table.loc[str(inputs / f'{name}.cif')]
        assert row['relaxed_file'] == str(relaxed / f'{name}.cif')
        written = Structure.from_file(relaxed / f'{name}.cif')
        assert written.volume / structure.volume - 1 == pytest.approx(row['volume_change'], abs=1e-4)
        assert -0.25 < row['volume_change'] < -0.02  # the strained cells shrink
        cation = name.removesuffix('O')
        expected = row['energy_mp'] - (ELEMENTS[cation] + ELEMENTS['O']) / 2
        assert row['e_above_hull'] == pytest.approx(expected, abs=1e-6)
        assert pd.isna(row['relax_reason']) and row['band_gap'] > 1
    query = user_shell.run(
        'aiida-dielectrics', 'query', '--kind', 'prediction', '--formula', 'SrO', '-f', 'json', check=True
    )
    (stored,) = json.loads(query.stdout)
    assert stored['e_above_hull'] == pytest.approx(table.loc[str(inputs / 'SrO.cif'), 'e_above_hull'])


@pytest.mark.parametrize(
    ('arguments', 'message'),
    [
        (['--relaxed-dir', 'out'], '--relaxed-dir needs --relax'),
        (['--relax', '--potential', 'mace'], "--potential: unknown potential 'mace'; choose one of"),
        (
            ['--relax', '--hull-entries', 'bad.json'],
            '--hull-entries: bad.json: entry 0 is not a pymatgen entry',
        ),
    ],
)
def test_predict_relax_bad_input_is_one_line(tmp_path, monkeypatch, arguments, message):
    """Refused before a model or a profile is loaded (in-process: the checks come first)."""
    from click.testing import CliRunner

    from aiida_dielectrics.cli import cli

    monkeypatch.chdir(tmp_path)
    rocksalt('Ca', 'O', 4.8).to(filename='CaO.cif')
    pathlib.Path('bad.json').write_text('[{"energy": "none"}]')
    result = CliRunner().invoke(cli, ['predict', 'CaO.cif', *arguments])
    assert result.exit_code == 1, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(f'Error: {message}')
