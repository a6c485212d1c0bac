"""Inference speed: naive per-structure ``predict_structure`` against batched multi-model inference.

Side by side in one run, on the same structures (Petousis 2017, repeated to ``--n``) and with the same
models (the E_form MEGNet and the band-gap, ε_elec and ε_ionic ensembles):

(a) naive: every model's own ``predict_structure`` per structure (its graph rebuilt per call), no autograd;
(b) batched: :func:`aiida_dielectrics.ml.inference.predict`, graphs built once per cutoff and shared,
    batches through all models, hull energies and Φ included;
(c) (b) run through the ``dielectrics.predict_structures`` calcfunction in a throw-away ``verdi presto`` profile
    (provenance written with :func:`aiida_dielectrics.tools.provenance.run_in_bulk`), including creating and
    storing the structure nodes and one prediction node per structure;
(c') the same with the structure nodes stored before the clock starts, as in a campaign, where
    candidate generation stored them.

Protostructure labels (symmetry analysis, not ML) are timed on their own; (b) and (c) skip them.

    python benchmarks/bench_inference.py --n 1000 --model-dir ../shared/models/matgl
"""

import argparse
import itertools
import json
import pathlib
import sys
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from temporary_profile import run_step


def structures(csv: pathlib.Path, count: int) -> list:
    from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows

    unique = [row.structure for row in read_rows(csv) if isinstance(row, Row)]
    return list(itertools.islice(itertools.cycle(unique), count))


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def store_step(crystals, model_sets, batch_size: int, prestored: bool) -> dict:
    """(c), run by :func:`run_step` in a fresh profile; model nodes are created and loaded untimed, and
    with ``prestored`` the structure nodes too (as in a campaign, where generation stored them)."""
    from aiida import load_profile
    from aiida.orm import StructureData

    from aiida_dielectrics.calculations import predictions

    load_profile()
    models = {
        target: predictions.model_node(target, model_set.source, model_set.architecture)
        for target, model_set in model_sets.items()
    }
    for node in models.values():
        predictions.load_model_node(node)

    def structures():
        return {f's{i}': StructureData(pymatgen=s) for i, s in enumerate(crystals)}

    stored = {key: node.store() for key, node in structures().items()} if prestored else None

    def run():
        nodes = stored or structures()
        outputs, _ = predictions.run_prediction(nodes, models, batch_size, labels=False)
        report = outputs['report'].get_dict()
        assert len(outputs['predictions']) + len(report['skipped']) == len(crystals), report

    return {'seconds': timed(run)[1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=1000, help='number of structures')
    parser.add_argument(
        '--csv',
        type=pathlib.Path,
        default=pathlib.Path(__file__).parents[1] / '..' / 'shared/data/petousis2017/dielectric_constant.csv',
    )
    parser.add_argument('--model-dir', help='folder of matgl models (else $AIIDA_DIELECTRICS_MODEL_DIR)')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads for all variants')
    parser.add_argument('--step', choices=['store', 'prestored'], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    warnings.filterwarnings('ignore')

    import numpy as np
    import torch

    from aiida_dielectrics.ml import inference, loading

    torch.set_num_threads(arguments.threads)
    model_sets = loading.load_predictors(arguments.model_dir, optional=())
    crystals = structures(arguments.csv, arguments.n)
    count = len(crystals)
    if arguments.step:
        print(
            json.dumps(store_step(crystals, model_sets, arguments.batch_size, arguments.step == 'prestored'))
        )
        return
    models = sum(len(s.members) for s in model_sets.values())

    naive, t_a = timed(inference.predict_naive, crystals, model_sets)
    table, t_b = timed(inference.predict, crystals, model_sets, arguments.batch_size, labels=False)
    ok = table['reason'].isna().to_numpy()  # naive predicts even where a reason says it should not
    for target, model_set in model_sets.items():  # same numbers, or the timing means nothing
        expected = model_set.summarize(naive[target])[0][ok]
        np.testing.assert_allclose(table[target][ok], expected, rtol=1e-3, atol=1e-3)
    _, t_labels = timed(lambda: [inference.protostructure_label(s) for s in crystals])
    forwarded = ['--n', str(count), '--csv', str(arguments.csv), '--batch-size', str(arguments.batch_size)]
    forwarded += ['--threads', str(arguments.threads)]
    if arguments.model_dir:
        forwarded += ['--model-dir', arguments.model_dir]
    t_c = run_step(__file__, *forwarded, '--step', 'store')['seconds']
    t_c_prestored = run_step(__file__, *forwarded, '--step', 'prestored')['seconds']

    print(f'{count} structures, {models} models, batch {arguments.batch_size}, {arguments.threads} thread(s)')
    variants = (
        ('(a) naive', t_a),
        ('(b) batched', t_b),
        ('(c) batched + stored', t_c),
        ("(c') structures stored before", t_c_prestored),
    )
    for name, seconds in variants:
        print(f'{name:30s} {seconds:7.1f} s  {count / seconds:7.1f} structures/s')
    print(f'skipped with a reason  {int((~ok).sum())}: {sorted(set(table["reason"][~ok]))}')
    print(f'b/a speed-up           {t_a / t_b:7.2f}x')
    print(f'c/b overhead           {100 * (t_c / t_b - 1):7.1f} %  (structure and prediction nodes)')
    print(f"c'/b overhead          {100 * (t_c_prestored / t_b - 1):7.1f} %  (prediction nodes only)")
    print(f'protostructure labels  {t_labels:7.1f} s  {count / t_labels:7.1f} structures/s (not in a/b/c)')


if __name__ == '__main__':
    main()
