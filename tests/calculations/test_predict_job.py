"""The prediction ``CalcJob`` on ``localhost`` (direct scheduler) makes the calcfunction's nodes; its parser's
exit codes on fake retrieved files; the migration of the calcfunction's old process type."""

import json
import sys

import pytest
from aiida.engine import run_get_node
from aiida.orm import CalcFunctionNode, CalcJobNode, Dict, Float, InstalledCode, StructureData, load_node
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.calculations.predict_job import PredictCalculation
from aiida_dielectrics.calculations.predictions import model_node, predict_structures
from aiida_dielectrics.cli import cli
from aiida_dielectrics.ml.inference import COLUMNS
from aiida_dielectrics.ml.loading import PACKAGED_MODELS
from aiida_dielectrics.tools.migrations import MOVES
from aiida_dielectrics.tools.provenance import run_in_bulk
from aiida_dielectrics.tools.query import batch_predictions

OLD, NEW = MOVES[0][1:]


def crystals() -> dict[str, StructureData]:
    """MgO, Si and a crystal with overlapping atoms (skipped with its reason)."""
    mgo = Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.21), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    si = Structure.from_spacegroup('Fd-3m', Lattice.cubic(5.43), ['Si'], [[0, 0, 0]])
    overlapping = Structure(Lattice.cubic(4.0), ['Na', 'Cl'], [[0, 0, 0], [0.01, 0, 0]])
    structures = {
        'mgo': mgo.get_primitive_structure(),
        'si': si.get_primitive_structure(),
        'bad': overlapping,
    }
    return {key: StructureData(pymatgen=structure) for key, structure in structures.items()}


def test_job_on_localhost_gives_the_calcfunction_nodes(aiida_profile, aiida_localhost, shared):
    """Attribute by attribute. No protostructure labels: importing their prototype data costs a process ~16 s
    on a busy two-core machine, and both paths take them from the same ``predict`` call."""
    models = {
        'e_form': model_node('e_form', shared / 'models' / 'matgl' / 'MEGNet-MP-2018.6.1-Eform'),
        **{
            target: model_node(target, PACKAGED_MODELS / target)
            for target in ('band_gap', 'diel_elec', 'diel_ionic')
        },
    }
    inputs = {
        'structures': crystals(),
        'models': models,
        'parameters': Dict({'batch_size': 2, 'labels': False}),
        'e_above_hull': {'mgo': Float(0.0)},
    }
    expected, function = run_in_bulk(predict_structures, **inputs)
    code = InstalledCode(computer=aiida_localhost, filepath_executable=sys.executable, label='python').store()
    outputs, job = run_get_node(PredictCalculation, code=code, **inputs)

    assert job.is_finished_ok, job.exit_message
    assert job.process_type == 'aiida.calculations:dielectrics.predict' != function.process_type
    assert outputs['report'].get_dict() == expected['report'].get_dict()
    assert set(outputs['report']['skipped']) == {'bad'}
    assert sorted(outputs['predictions']) == ['mgo', 'si']
    for key, prediction in outputs['predictions'].items():
        assert prediction.base.attributes.all == expected['predictions'][key].base.attributes.all
    assert outputs['predictions']['mgo'].e_above_hull == 0.0
    assert batch_predictions([job.pk]).keys() == batch_predictions([function.pk]).keys() == {'mgo', 'si'}


@pytest.mark.parametrize(
    ('content', 'status'),
    [
        (None, 300),
        ('{"mgo": {"formula": "MgO"', 301),
        ('{"other": {}}', 301),
        ('{"mgo": {"formula": "MgO", "reason": null}}', 301),
        (json.dumps({'mgo': {**dict.fromkeys(COLUMNS, 0.5), 'formula': 'MgO', 'reason': None}}), 0),
    ],
    ids=['missing', 'truncated', 'other keys', 'no values', 'valid'],
)
def test_parser_exit_codes(generate_calc_job_node, tmp_path, content, status):
    if content is not None:
        (tmp_path / 'predictions.json').write_text(content)
    structure = next(iter(crystals().values()))
    node = generate_calc_job_node('dielectrics.predict', tmp_path, inputs={'structures__mgo': structure})
    assert node.exit_status == status, node.exit_message


def test_setup_moves_old_calcfunction_nodes(aiida_profile, aiida_localhost, shared):
    """``setup`` gives the calcfunction's nodes of before the move the new process type, and no others."""
    old = CalcFunctionNode()
    old.set_process_type(OLD)
    old.store()
    job = CalcJobNode(computer=aiida_localhost, process_type=OLD).store()
    pseudos = shared / 'pseudos'
    arguments = ['setup', '--pseudo-dir', pseudos / 'PseudoDojo-0.4-PBE-SR-noCC-standard']
    first = CliRunner().invoke(cli, [str(argument) for argument in arguments], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert 'Process nodes moved to their new entry point: 1.' in first.output
    assert load_node(old.pk).process_type == NEW
    assert load_node(old.pk).process_class is predict_structures
    assert load_node(job.pk).process_type == OLD
    again = CliRunner().invoke(cli, [str(argument) for argument in arguments], catch_exceptions=False)
    assert 'moved' not in again.output


def test_job_refuses_missing_models(aiida_profile):
    problem = PredictCalculation.spec().inputs.validate({'structures': crystals(), 'models': {}})
    assert 'models.band_gap, models.diel_elec, models.diel_ionic missing' in str(problem)
