"""The pure CSV reader: every row of the real file, and a malformed copy."""

import numpy as np
import pytest

from aiida_dielectrics.science.datasets import petousis2017


def write_copy_with_bad_rows(source, target, bad_lines):
    """Copy the first rows of the real CSV, replacing some rows by broken ones."""
    lines = source.read_text().splitlines(keepends=True)[:12]
    for number, replacement in bad_lines.items():
        lines[number - 1] = replacement(lines[number - 1])
    target.write_text(''.join(lines))


def test_reads_all_rows_of_the_real_file(petousis_csv):
    rows = list(petousis2017.read_rows(petousis_csv))
    assert len(rows) == 1056
    assert not [row for row in rows if isinstance(row, petousis2017.RowError)]
    first = rows[0]
    assert (first.line, first.material_id, first.structure.composition.reduced_formula) == (
        3,
        'mp-441',
        'Rb2Te',
    )
    assert first.band_gap == pytest.approx(1.88)
    np.testing.assert_allclose(first.epsilon_electronic, first.epsilon_electronic.T)
    # ionic = total - electronic, diagonal of row 0: 6.23414745 - 3.44115795
    assert first.epsilon_ionic[0, 0] == pytest.approx(6.23414745 - 3.44115795, abs=1e-6)
    assert rows[-1].line == 1058


def test_bad_rows_are_reported_with_line_and_reason(petousis_csv, tmp_path):
    broken = tmp_path / 'broken.csv'
    write_copy_with_bad_rows(
        petousis_csv,
        broken,
        {
            4: lambda line: line.replace('1,3.52,', '1,-3.52,', 1),
            6: lambda line: line.replace('[[', '[[[', 1),
            8: lambda line: line.split(',')[0] + ',1.0\n',
        },
    )
    rows = list(petousis2017.read_rows(broken))
    errors = {row.line: row.reason for row in rows if isinstance(row, petousis2017.RowError)}
    assert sorted(errors) == [4, 6, 8]
    assert 'band_gap must be >= 0' in errors[4]
    assert 'e_electronic' in errors[6]
    assert 'column meta is empty' in errors[8]
    assert len([row for row in rows if isinstance(row, petousis2017.Row)]) == 7


def test_wrong_file_is_refused(tmp_path):
    other = tmp_path / 'other.csv'
    other.write_text('a,b\n1,2\n')
    with pytest.raises(ValueError, match='missing columns band_gap, e_electronic, e_total, meta'):
        list(petousis2017.read_rows(other))
