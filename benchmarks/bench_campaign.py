"""Campaign throughput: generation → stored predictions → selection, and where the time goes.

In a throw-away ``verdi presto`` profile: substitution candidates of the first ``--seeds`` Petousis
structures (the ``generate_candidates`` calcfunction, candidates stored), GNN predictions stored one
node per candidate (the ``predict_structures`` calcfunction), then the ``select_candidates``
calcfunction, each run with :func:`aiida_dielectrics.tools.provenance.run_in_bulk`. The pure work inside each
process (substitution enumeration, ML inference) is timed as it runs, so storage and provenance =
process − pure work, with no second run.

    python benchmarks/bench_campaign.py --n 10000 --seeds 400 --model-dir ../shared/models/matgl
"""

import argparse
import json
import pathlib
import sys
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from temporary_profile import run_step

CSV = (
    pathlib.Path(__file__).parents[1] / '..' / 'shared' / 'data' / 'petousis2017' / 'dielectric_constant.csv'
)


class Stopwatch:
    """Accumulates the time spent in a wrapped function."""

    def __init__(self, module, name: str):
        self.seconds = 0.0
        function = getattr(module, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(module, name, timed)


def campaign(arguments) -> dict:
    """All steps, timed, in the loaded (fresh) profile."""
    from aiida import load_profile
    from aiida.orm import Dict, StructureData

    load_profile()
    from aiida_dielectrics.calculations import predictions
    from aiida_dielectrics.calculations.candidates import generate_candidates
    from aiida_dielectrics.ml import inference
    from aiida_dielectrics.ml.loading import load_predictors
    from aiida_dielectrics.science import candidates
    from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows
    from aiida_dielectrics.tools.provenance import run_in_bulk
    from aiida_dielectrics.workflows.screening import select_candidates

    seeds = [row for row in read_rows(arguments.csv) if isinstance(row, Row)][: arguments.seeds]
    model_sets = load_predictors(arguments.model_dir)
    models = {
        target: predictions.model_node(target, s.source, s.architecture) for target, s in model_sets.items()
    }
    generation, ml = Stopwatch(candidates, 'generate_substitutions'), Stopwatch(inference, 'predict')
    times = {}

    start = time.perf_counter()
    for node in models.values():
        predictions.load_model_node(node)
    times['loading the model nodes (once)'] = time.perf_counter() - start

    start = time.perf_counter()
    generated, _ = run_in_bulk(
        generate_candidates,
        parameters=Dict({'threshold': 1e-4, 'max_candidates': arguments.n}),
        **{f'seed_{i}': StructureData(pymatgen=row.structure) for i, row in enumerate(seeds)},
    )
    elapsed = time.perf_counter() - start
    times['candidate generation (substitution, labels)'] = generation.seconds
    times['storing candidates and provenance'] = elapsed - generation.seconds
    candidates_ = generated['structures']

    start = time.perf_counter()
    outputs, _ = predictions.run_prediction(candidates_, models, labels=False)
    elapsed = time.perf_counter() - start
    times['ML inference'] = ml.seconds
    times['storing predictions and provenance'] = elapsed - ml.seconds

    start = time.perf_counter()
    run_in_bulk(
        select_candidates, parameters=Dict({'count': 10, 'ranking': 'fom_adj'}), **outputs['predictions']
    )
    times['selection'] = time.perf_counter() - start
    return {'candidates': len(candidates_), 'predicted': len(outputs['predictions']), 'seconds': times}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=10000, help='Candidates to generate.')
    parser.add_argument('--seeds', type=int, default=400, help='Petousis structures used as seeds.')
    parser.add_argument('--model-dir', default=None, help='Folder of local models (E_form, band gap).')
    parser.add_argument('--csv', type=pathlib.Path, default=CSV)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (as bench_inference.py).')
    parser.add_argument('--step', action='store_true', help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.step:
        import torch

        warnings.simplefilter('ignore')
        torch.set_num_threads(arguments.threads)
        print(json.dumps(campaign(arguments)))
        return
    forwarded = [
        '--n',
        str(arguments.n),
        '--seeds',
        str(arguments.seeds),
        '--threads',
        str(arguments.threads),
        '--csv',
        str(arguments.csv.resolve()),
    ]
    if arguments.model_dir:
        forwarded += ['--model-dir', str(pathlib.Path(arguments.model_dir).resolve())]
    result = run_step(__file__, *forwarded, '--step')
    total = sum(result['seconds'].values())
    print(f'candidates generated: {result["candidates"]}, predicted and stored: {result["predicted"]}')
    for step, seconds in result['seconds'].items():
        print(f'{step:40s} {seconds:8.1f} s  {100 * seconds / total:5.1f} %')
    print(f'{"total":40s} {total:8.1f} s  {result["candidates"] / total:.1f} candidates/s')


if __name__ == '__main__':
    sys.exit(main())
