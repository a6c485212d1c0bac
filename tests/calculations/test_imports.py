"""Import of the real Petousis CSV into AiiDA, idempotence, queries and their CLI.

The full import runs once for this module (~40 s); every query result is checked against an
independent computation from the CSV with plain ``csv``/``ast``/``numpy``.
"""

import ast
import csv
import json
import pathlib
import re

import numpy as np
import pytest
from aiida.orm import CalcFunctionNode, Group, QueryBuilder, SinglefileData, StructureData
from click.testing import CliRunner

from aiida_dielectrics.calculations.imports import run_petousis2017_import
from aiida_dielectrics.cli import cli
from aiida_dielectrics.data import DielectricData
from aiida_dielectrics.tools.query import query_dielectrics


def figures_of_merit_from_csv(path) -> dict[str, float]:
    """mp-id → Φ computed independently of the package: mean eigenvalue of e_total × band gap."""
    with open(path) as handle:
        handle.readline()
        result = {}
        for row in csv.DictReader(handle):
            total = np.array(ast.literal_eval(row['e_total']))
            meta = ast.literal_eval(row['meta'])
            result[meta['material_id']] = np.trace(total) / 3 * float(row['band_gap'])
    return result


@pytest.fixture(scope='module')
def imported(aiida_profile, petousis_csv):
    aiida_profile.reset_storage()
    report, node = run_petousis2017_import(petousis_csv)
    return report, node


def run_cli(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_import_creates_linked_nodes_in_a_group(imported):
    report, node = imported
    assert report == {'imported': 1056, 'already_present': 0, 'skipped': []}
    assert node.is_finished_ok
    assert isinstance(node.inputs.csv_file, SinglefileData)
    group = Group.collection.get(label='petousis2017')
    assert group.count() == 2 * 1056
    dielectric = node.outputs.dielectrics.mp_441
    assert dielectric.creator.uuid == node.uuid
    assert dielectric.engine == 'imported'
    assert dielectric.base.attributes.get('source_id') == 'mp-441'
    assert node.outputs.structures.mp_441.get_formula() == 'Rb2Te'


def test_reimport_does_not_duplicate(imported, petousis_csv, tmp_path):
    report, node = run_petousis2017_import(petousis_csv)
    assert node is None
    assert report['already_present'] == 1056
    # A different file that overlaps: only new rows are imported, the rest is recognised.
    lines = petousis_csv.read_text().splitlines(keepends=True)
    subset = tmp_path / 'subset.csv'
    subset.write_text(''.join(lines[:5]))
    report, node = run_petousis2017_import(subset, group_label='subset')
    assert report['imported'] == 0
    assert node.is_finished_ok
    assert QueryBuilder().append(DielectricData).count() == 1056
    assert QueryBuilder().append(StructureData).count() == 1056
    # Its group holds its own three rows (made by the first import), not the whole data set.
    members = Group.collection.get(label='subset').nodes
    ids = sorted(
        member.base.attributes.get('source_id') for member in members if isinstance(member, DielectricData)
    )
    assert len(ids) == 3 and ids == sorted(figures_of_merit_from_csv(subset))
    assert len(members) == 2 * 3


def test_fom_query_matches_independent_computation(imported, petousis_csv):
    expected = figures_of_merit_from_csv(petousis_csv)
    rows = query_dielectrics(fom_min=200)
    winners = sorted(mp for mp, fom in expected.items() if fom > 200)
    assert len(winners) >= 1
    found = QueryBuilder().append(
        DielectricData, filters={'attributes.fom': {'>': 200}}, project='attributes.source_id'
    )
    assert sorted(found.all(flat=True)) == winners
    assert [row['fom'] for row in rows] == pytest.approx(
        sorted((expected[mp] for mp in winners), reverse=True)
    )


def test_hull_filter_excludes_nodes_without_hull_energy(imported):
    assert query_dielectrics(fom_min=200, e_hull_max=0.1) == []
    assert query_dielectrics(e_hull_max=10.0) == []


def test_band_gap_window_and_group(imported, petousis_csv):
    rows = query_dielectrics(band_gap_min=5.0, band_gap_max=6.0, group='petousis2017', order_by='band_gap')
    assert rows and all(5.0 <= row['band_gap'] <= 6.0 for row in rows)
    assert [row['band_gap'] for row in rows] == sorted((row['band_gap'] for row in rows), reverse=True)
    with pytest.raises(ValueError, match="no group with label 'nope'"):
        query_dielectrics(group='nope')


def test_query_cli_formats(imported):
    table = run_cli('query', '--fom-min', '200')
    assert table.exit_code == 0
    assert 'formula' in table.output
    as_json = json.loads(run_cli('query', '--fom-min', '200', '--format', 'json').output)
    assert len(as_json) == len(query_dielectrics(fom_min=200))
    as_csv = run_cli('query', '--fom-min', '200', '-f', 'csv', '-n', '1').output.splitlines()
    assert as_csv[0].startswith('pk,uuid,formula') and len(as_csv) == 2


def test_query_cli_no_results_and_bad_arguments(imported):
    empty = run_cli('query', '--fom-min', '1e9')
    assert empty.exit_code == 0
    assert 'No results match these filters.' in empty.output
    negative = run_cli('query', '--band-gap-min', '-1')
    assert negative.exit_code == 2 and 'must be >= 0' in negative.output
    not_a_number = run_cli('query', '--fom-min', 'lots')
    assert not_a_number.exit_code == 2 and "'lots' is not a valid float" in not_a_number.output
    bad_order = run_cli('query', '--order-by', 'colour')
    assert bad_order.exit_code == 2 and 'choose one of' in bad_order.output
    bad_group = run_cli('query', '-G', 'nope')
    assert bad_group.exit_code == 1 and "Error: no group with label 'nope'" in bad_group.output


def test_import_cli_reports_bad_rows_and_is_idempotent(imported, petousis_csv, tmp_path):
    lines = petousis_csv.read_text().splitlines(keepends=True)
    broken = tmp_path / 'broken.csv'
    broken.write_text(''.join([*lines[:3], lines[3].replace('1,3.52,', '1,-3.52,', 1)]))
    result = run_cli('import', 'petousis2017', str(broken))
    assert result.exit_code == 0
    assert 'Skipped line 4: band_gap must be >= 0 eV, got -3.52' in result.output
    again = run_cli('import', 'petousis2017', str(broken))
    assert 'Nothing to do' in again.output
    missing = run_cli('import', 'petousis2017', str(tmp_path / 'missing.csv'))
    assert missing.exit_code == 2 and 'does not exist' in missing.output
    assert QueryBuilder().append(CalcFunctionNode, filters={'attributes.exit_status': 0}).count() >= 2


def test_tutorial_runs_as_written(imported, petousis_csv, capsys):
    """The Python blocks of docs/get-started/tutorial.md, in order, on the imported data."""
    text = (pathlib.Path(__file__).parents[2] / 'docs' / 'get-started' / 'tutorial.md').read_text()
    blocks = re.findall(r'```python\n(.*?)```', text, flags=re.DOTALL)
    assert len(blocks) >= 4
    namespace = {'CSV_PATH': petousis_csv}
    for block in blocks:
        exec(compile(block, 'docs/get-started/tutorial.md', 'exec'), namespace)
    output = capsys.readouterr().out
    assert '1056 entries' in output
    assert 'Φ =' in output


def test_reimport_into_another_group_fills_it(imported, petousis_csv):
    _, node = run_petousis2017_import(petousis_csv, group_label='my-copy')
    assert node is None
    assert Group.collection.get(label='my-copy').count() == 2 * 1056
    run_petousis2017_import(petousis_csv, group_label='my-copy')
    assert Group.collection.get(label='my-copy').count() == 2 * 1056
