"""Campaign throughput: generation → stored predictions → selection, and where the time goes.

In a throw-away ``verdi presto`` profile: substitution candidates of the first ``--seeds`` Petousis
structures (the ``generate_candidates`` calcfunction, candidates stored), GNN predictions stored one
node per candidate (the ``predict_structures`` calcfunction), then the ``select_candidates``
calcfunction, each run with :func:`aiida_dielectrics.tools.provenance.run_in_bulk`: stage 1 of the
screening funnel. The pure work inside each process (substitution enumeration, ML inference) is timed
as it runs, so storage and provenance = process − pure work, with no second run.

``--relax-count N`` adds stage 2 as ``dielectrics.screening`` runs it (the same functions): the best
``N`` by Φ_adj among those with the loose filters' band gap are relaxed with SevenNet-0, measured
against the default hull (the Petousis data imported first, untimed, as the known structures) and
predicted again; the default hull is then built a second time to time its reuse.

    python benchmarks/bench_campaign.py --n 10000 --seeds 400 --model-dir ../shared/models/matgl --relax-count 20
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
    from aiida_dielectrics.calculations.predictions import structure_of
    from aiida_dielectrics.ml import inference
    from aiida_dielectrics.ml.loading import load_predictors
    from aiida_dielectrics.science import candidates
    from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows
    from aiida_dielectrics.tools.provenance import run_in_bulk
    from aiida_dielectrics.workflows.screening import LOOSE_FILTERS, select_candidates

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
    count = arguments.relax_count or 10
    chosen, _ = run_in_bulk(
        select_candidates,
        parameters=Dict({**LOOSE_FILTERS, 'count': count, 'ranking': 'fom_adj'}),
        **outputs['predictions'],
    )
    times['selection'] = time.perf_counter() - start
    result = {'candidates': len(candidates_), 'predicted': len(outputs['predictions']), 'seconds': times}
    if arguments.relax_count:
        preselected = {key: structure_of(outputs['predictions'][key]) for key in chosen['selected']}
        result['stage 2'] = stage_two(preselected, models, arguments)
    return result


def stage_two(structures: dict, models: dict, arguments) -> dict:
    """Relaxation, default hull and predictions on the relaxed structures, timed, as the work chain runs them."""
    from aiida_dielectrics.calculations import hull, predictions, relax
    from aiida_dielectrics.calculations.imports import run_petousis2017_import

    run_petousis2017_import(arguments.csv)  # the known structures of the default hull (not timed)
    times = {}
    start = time.perf_counter()
    found = relax.relax(structures, threads=arguments.threads)
    times['relaxation'] = time.perf_counter() - start
    relaxed = {key: value for key, value in found.items() if value['results']['reason'] is None}
    results = {key: value['results'] for key, value in relaxed.items()}
    start = time.perf_counter()
    reference = hull.build_default_hull([result['composition'] for result in results.values()])
    times['default hull (reference relaxations)'] = time.perf_counter() - start
    start = time.perf_counter()
    energies, _ = hull.run_hull_energies(reference, results)
    times['E_hull'] = time.perf_counter() - start
    start = time.perf_counter()
    predictions.run_prediction(
        {key: value['relaxed'] for key, value in relaxed.items()},
        models,
        e_above_hull=energies.get('e_above_hull', {}),
    )
    times['predictions on the relaxed structures'] = time.perf_counter() - start
    start = time.perf_counter()
    hull.build_default_hull([result['composition'] for result in results.values()])
    reuse = time.perf_counter() - start
    return {
        'candidates': len(structures),
        'relaxed': len(relaxed),
        'hull entries': len(reference['entries']),
        'seconds': times,
        'default hull again (reused)': reuse,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=10000, help='Candidates to generate.')
    parser.add_argument('--seeds', type=int, default=400, help='Petousis structures used as seeds.')
    parser.add_argument('--model-dir', default=None, help='Folder of local models (E_form, band gap).')
    parser.add_argument('--csv', type=pathlib.Path, default=CSV)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (as bench_inference.py).')
    parser.add_argument('--relax-count', type=int, default=0, help='Candidates through stage 2 (0: none).')
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
        '--relax-count',
        str(arguments.relax_count),
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
    print(f'{"total (stage 1)":40s} {total:8.1f} s  {result["candidates"] / total:.1f} candidates/s')
    if 'stage 2' in result:
        stage = result['stage 2']
        print(
            f'stage 2: {stage["candidates"]} preselected, {stage["relaxed"]} relaxed, {stage["hull entries"]} hull entries'
        )
        for step, seconds in stage['seconds'].items():
            print(f'{step:40s} {seconds:8.1f} s  {seconds / stage["candidates"]:6.2f} s/candidate')
        total = sum(stage['seconds'].values())
        print(f'{"total (stage 2)":40s} {total:8.1f} s  {total / stage["candidates"]:6.2f} s/candidate')
        print(f'{"default hull again (reused)":40s} {stage["default hull again (reused)"]:8.1f} s')


if __name__ == '__main__':
    sys.exit(main())
