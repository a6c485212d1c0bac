"""Sharing: export a campaign group with its provenance and import it into a fresh profile."""

import collections

from aiida.orm import Group, Node, QueryBuilder
from aiida.tools.archive import import_archive
from click.testing import CliRunner

from aiida_dielectrics.cli import cli
from aiida_dielectrics.data import DielectricData, PredictionData
from aiida_dielectrics.tools.plot import structure_uuids
from aiida_dielectrics.tools.query import query_dielectrics
from tests.campaign_nodes import build_campaign


def snapshot() -> dict:
    """What a colleague should see: queries (without pks), node and link counts, prediction↔result pairs."""
    queries = {
        kind: [
            {key: value for key, value in row.items() if key != 'pk'}
            for row in query_dielectrics(kind, 'campaign')
        ]
        for kind in ('dielectric', 'prediction')
    }
    uuid_of = dict(QueryBuilder().append(Node, project=['id', 'uuid']).all())
    pairs = {
        kind.__name__: sorted((uuid_of[pk], uuid) for pk, uuid in structure_uuids(kind, 'campaign').items())
        for kind in (PredictionData, DielectricData)
    }
    return {
        'queries': queries,
        'node_types': collections.Counter(QueryBuilder().append(Node, project='node_type').all(flat=True)),
        'links': QueryBuilder().append(Node, tag='a').append(Node, with_incoming='a').count(),
        'group': sorted(node.uuid for node in Group.collection.get(label='campaign').nodes),
        'pairs': pairs,
    }


def test_export_then_import_into_a_fresh_profile(
    aiida_profile, aiida_config_tmp, aiida_profile_factory, tmp_path
):
    aiida_profile.reset_storage()
    build_campaign()
    before = snapshot()
    assert len(before['queries']['dielectric']) == 3 and len(before['queries']['prediction']) == 4

    archive = tmp_path / 'campaign.aiida'
    result = CliRunner().invoke(cli, ['export', 'campaign', '--output', str(archive)])
    assert result.exit_code == 0, result.output
    assert archive.is_file() and 'group' in result.output

    again = CliRunner().invoke(cli, ['export', 'campaign', '--output', str(archive)])
    assert again.exit_code == 1 and '--force' in again.output
    missing = CliRunner().invoke(cli, ['export', 'nope', '--output', str(tmp_path / 'x.aiida')])
    assert missing.exit_code == 1
    assert missing.output.startswith("Error: Invalid value for 'GROUP':") and 'nope' in missing.output
    assert len(missing.output.strip().splitlines()) == 1

    with aiida_profile_factory(aiida_config_tmp):
        assert QueryBuilder().append(Node).count() == 0
        import_archive(archive)
        after = snapshot()
    assert after == before
