"""``import mp-dfpt-extra`` and ``train`` on Petousis + extra as a user runs them: subprocesses on the fresh
profile of ``setup``, a few materials of each data set, a 1-epoch training run."""

import json
import re

import pytest


@pytest.fixture(scope='module')
def files(user_shell, petousis_head, mp_dfpt_extra_frames):
    """Six Petousis rows, and six mp-dfpt-extra frames of which the fourth has no ionic tensor."""
    frames = list(mp_dfpt_extra_frames[:6])
    frames[3] = re.sub(r' REF_dielectric_ionic="[^"]*"', '', frames[3])
    extra = user_shell.home / 'extra6.extxyz'
    extra.write_text(''.join(frames))
    bad_line = sum(frame.count('\n') for frame in frames[:3]) + 1
    return petousis_head(user_shell.home / 'petousis6.csv', 6), extra, bad_line


def test_import_both_into_one_group_idempotently_then_query(user_shell, files):
    petousis, extra, bad_line = files
    result = user_shell.run('aiida-dielectrics', 'import', 'mp-dfpt-extra', extra, '-G', 'both', check=True)
    assert 'Imported 5 entries into group `both`' in result.stdout
    assert '(0 already present, 1 skipped)' in result.stdout
    assert f'Skipped line {bad_line}: REF_dielectric_ionic is missing' in result.stderr
    again = user_shell.run('aiida-dielectrics', 'import', 'mp-dfpt-extra', extra, '-G', 'both', check=True)
    assert 'Nothing to do: this file was imported before (5 entries present).' in again.stdout
    user_shell.run('aiida-dielectrics', 'import', 'petousis2017', petousis, '-G', 'both', check=True)
    rows = json.loads(
        user_shell.run('aiida-dielectrics', 'query', '-G', 'both', '-f', 'json', check=True).stdout
    )
    assert len(rows) == 6 + 5
    assert sum(row['band_gap'] is None and row['fom'] is None for row in rows) == 5


def test_train_on_both_files_for_one_epoch(user_shell, files):
    petousis, extra, _ = files
    output = user_shell.home / 'both-ionic'
    result = user_shell.run(
        'aiida-dielectrics', 'train', '--data', petousis, '--data', extra, '--target', 'diel_ionic',
        '--members', '1', '--epochs', '1', '--batch-size', '8', '-o', output,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 'skipped mp-dfpt-extra line' in result.stderr
    assert f'11 materials read from {petousis}, {extra}' in result.stderr
    card = json.loads((output / 'model_card.json').read_text())
    assert card['data']['source'] == 'petousis2017+mp-dfpt-extra' and card['data']['entries'] == 11
    assert sum(card['split']['sizes'].values()) == 11 and card['split']['grouped_by'] == 'reduced_formula'
