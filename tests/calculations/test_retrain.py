"""The learning loop: ``retrain`` trains a model node on a campaign's DFPT results plus the base data."""

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import calcfunction
from click.testing import CliRunner

from aiida_dielectrics.cli import cli
from aiida_dielectrics.data.dielectric import DielectricData


@calcfunction
def fake_dfpt(structure: orm.StructureData, epsilon: orm.Float) -> DielectricData:
    """Stands in for ``dielectric_from_ph``: a DielectricData made from the structure it was computed on."""
    return DielectricData(
        epsilon_electronic=np.eye(3) * epsilon.value,
        epsilon_ionic=np.eye(3) * 2 * epsilon.value,
        band_gap=3.0,
        engine='qe',
        structure=structure,
    )


@pytest.fixture
def loop(aiida_profile_clean, petousis_head, shared, tmp_path):
    """A base group of 8 imported materials and a campaign group with 3 fake DFPT results."""
    from pymatgen.core import Lattice, Structure

    from aiida_dielectrics.calculations.imports import run_petousis2017_import

    run_petousis2017_import(petousis_head(tmp_path / 'small.csv', 8), group_label='base')
    campaign = orm.Group(label='campaign').store()
    results = []
    for i, (a, b) in enumerate([('Mg', 'S'), ('Ca', 'O'), ('Sr', 'Se')]):
        structure = orm.StructureData(
            pymatgen=Structure.from_spacegroup(
                'Fm-3m', Lattice.cubic(4.5 + 0.3 * i), [a, b], [[0] * 3, [0.5] * 3]
            )
        )
        results.append(fake_dfpt(structure, orm.Float(4.0 + i)))
    campaign.add_nodes(results)
    pretrained = str(shared / 'models' / 'matgl' / 'MEGNet-MP-2019.4.1-BandGap-mfi')
    return results, pretrained


def test_retrain_links_the_model_to_campaign_and_base_nodes(loop, tmp_path):
    from aiida_dielectrics.data.model import ModelData

    results, pretrained = loop
    args = ['retrain', '--campaign', 'campaign', '--base-group', 'base', '--target', 'diel_ionic']
    args += ['--members', '1', '--epochs', '1', '--batch-size', '8', '--pretrained', pretrained]
    result = CliRunner().invoke(cli, [*args, '-o', str(tmp_path / 'out')])
    assert result.exit_code == 0, result.output
    model = orm.load_node(int(result.stdout.strip().splitlines()[-1]))
    assert isinstance(model, ModelData) and model.target == 'diel_ionic' and model.members == 1
    assert (tmp_path / 'out' / 'model_card.json').is_file()
    process = model.creator
    assert process.is_finished_ok and process.process_label == 'train_model'
    inputs = {
        link.link_label: link.node.uuid
        for link in process.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    }
    uuids = set(inputs.values())
    base = {node.uuid for node in orm.Group.collection.get(label='base').nodes}
    assert len(base) == 16 and base <= uuids
    for result_node in results:
        structure = result_node.creator.inputs.structure
        assert {result_node.uuid, structure.uuid} <= uuids
        assert inputs[f'dielectrics__campaign_{result_node.pk}'] == result_node.uuid
        assert inputs[f'structures__campaign_{result_node.pk}'] == structure.uuid
    assert len(inputs) == 2 * (8 + 3) + 6  # structures, dielectrics and the six parameter nodes


def test_retrain_refuses_unknown_groups_and_campaigns_without_dfpt(loop):
    orm.Group(label='empty').store().add_nodes([orm.Int(1).store()])
    cases = {
        ('--campaign', 'nope'): "Invalid value for '--campaign': no Group found with LABEL<nope>",
        (
            '--campaign',
            'campaign',
            '--base-group',
            'nope',
        ): "Invalid value for '--base-group': no Group found",
        ('--campaign', 'empty', '--base-group', 'base'): 'campaign group empty holds no DFPT results',
        ('--campaign', 'base', '--base-group', 'base'): 'campaign group base holds no DFPT results',
    }
    pretrained = loop[1]
    for options, message in cases.items():
        result = CliRunner().invoke(
            cli, ['retrain', *options, '--target', 'diel_elec', '--pretrained', pretrained]
        )
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith('Error: ') and message in lines[0]
