"""A prediction batch as a ``CalcJob`` (``dielectrics.predict``): the inference runs on any AiiDA computer.

:func:`.predictions.predict_structures` runs inside the daemon worker; :class:`PredictCalculation` runs the
same batch as a job, e.g. on a GPU node through SLURM, so the engine can spread shards over a queue. The job
runs the package's own program (:mod:`.ml.job`) with the model files copied from the model nodes into its
folder, and :class:`PredictParser` makes the same ``predictions`` and ``report`` outputs from what it
writes, through :func:`.predictions.prediction_outputs`.
"""

from __future__ import annotations

import json

from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.engine import CalcJob
from aiida.orm import Dict, Float, StructureData
from aiida.parsers import Parser

from aiida_dielectrics.calculations.predictions import missing_models, prediction_outputs, pymatgen_structure
from aiida_dielectrics.data.model import ModelData
from aiida_dielectrics.data.prediction import PredictionData
from aiida_dielectrics.ml.job import INPUT, OUTPUT

#: Folder of the job that holds one sub-folder of model files per target.
MODELS = 'models'


class PredictCalculation(CalcJob):
    """Predict ``structures.<key>`` with ``models.<target>`` as a job; the inputs and outputs of
    :func:`.predictions.predict_structures`.

    The code is a Python interpreter of an environment with ``aiida-dielectrics`` installed (no profile
    needed there); the job runs ``python -m aiida_dielectrics.ml.job``. A screening campaign submits its
    shards as these jobs when its ``inference`` namespace has a code
    (:meth:`.workflows.screening.ScreeningWorkChain.run_shards`), with the inputs of
    :func:`.predictions.prediction_inputs`, as the calcfunction gets them. The options choose the machine:
    e.g. ``{'resources': {'num_machines': 1}, 'queue_name': 'gpu', 'custom_scheduler_commands': '#SBATCH
    --gres=gpu:1'}``.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=StructureData, dynamic=True, help='Structures by key.')
        spec.input_namespace(
            'models', valid_type=ModelData, dynamic=True, validator=validate_models, help='Models by target.'
        )
        spec.input('parameters', valid_type=Dict, required=False, help='`batch_size` and `labels`.')
        spec.input_namespace(
            'e_above_hull', valid_type=Float, dynamic=True, required=False, help='Hull energies by key.'
        )
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['withmpi'].default = False
        options['parser_name'].default = 'dielectrics.predict'
        spec.output_namespace('predictions', valid_type=PredictionData, dynamic=True)
        spec.output('report', valid_type=Dict, help='`predicted` count and `skipped` reasons by key.')
        spec.exit_code(
            300,
            'ERROR_OUTPUT_MISSING',
            message=f'the job wrote no {OUTPUT}: `verdi calcjob outputcat PK _scheduler-stderr.txt` says why',
        )
        spec.exit_code(301, 'ERROR_OUTPUT_GARBLED', message=f'{OUTPUT} cannot be read: {{reason}}')

    def prepare_for_submission(self, folder):
        keys = sorted(self.inputs.structures)
        models = self.inputs.models
        job = {
            'structures': {key: pymatgen_structure(self.inputs.structures[key]).as_dict() for key in keys},
            'models': {target: f'{MODELS}/{target}' for target in models},
            'parameters': self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {},
        }
        with folder.open(INPUT, 'w') as handle:
            json.dump(job, handle)
        code = CodeInfo()
        code.code_uuid = self.inputs.code.uuid
        code.cmdline_params = ['-m', 'aiida_dielectrics.ml.job']
        calculation = CalcInfo()
        calculation.codes_info = [code]
        calculation.local_copy_list = [
            (node.uuid, '.', f'{MODELS}/{target}') for target, node in models.items()
        ]
        calculation.retrieve_list = [OUTPUT]
        return calculation


def validate_models(models, _) -> str | None:
    return missing_models(models)


class PredictParser(Parser):
    """The outputs of :func:`.predictions.predict_structures` from the job's :data:`.ml.job.OUTPUT`."""

    def parse(self, **kwargs):
        try:
            with self.retrieved.base.repository.open(OUTPUT) as handle:
                content = handle.read()
        except FileNotFoundError:
            return self.exit_codes.ERROR_OUTPUT_MISSING
        inputs = self.node.inputs
        keys = sorted(inputs.structures)
        hull_energies = getattr(inputs, 'e_above_hull', {})
        try:
            records = json.loads(content)
            if not isinstance(records, dict) or sorted(records) != keys:
                raise ValueError(f'its keys are not the {len(keys)} keys of the structures')
            outputs = prediction_outputs(keys, [records[key] for key in keys], hull_energies)
        except (ValueError, TypeError, KeyError) as exception:
            return self.exit_codes.ERROR_OUTPUT_GARBLED.format(
                reason=f'{type(exception).__name__}: {exception}'
            )
        for key, node in outputs['predictions'].items():
            self.out(f'predictions.{key}', node)
        self.out('report', outputs['report'])
