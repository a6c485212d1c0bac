"""Caching a real prediction batch through ``run_in_bulk``: the re-run reuses the predictions, timed.

The printed line (``pytest -s``) is the measurement the docs quote: first run, cached re-run and the
engine's own cached run of the same calcfunction with the same inputs.
"""

import itertools
import time

from aiida.manage.caching import enable_caching
from aiida.orm import Dict, StructureData

from aiida_dielectrics.calculations.predictions import load_model_node, model_node, predict_structures
from aiida_dielectrics.ml.inference import predict
from aiida_dielectrics.ml.loading import PACKAGED_MODELS
from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows
from aiida_dielectrics.tools.provenance import run_in_bulk

#: Structures in the batch: enough that inference, not the process node, dominates the first run.
BATCH = 24


def test_cached_prediction_batch_is_reused_and_fast(aiida_profile, shared, petousis_csv):
    matgl = shared / 'models' / 'matgl'
    models = {
        'e_form': model_node('e_form', matgl / 'MEGNet-MP-2018.6.1-Eform'),
        'band_gap': model_node('band_gap', PACKAGED_MODELS / 'band_gap'),
        'diel_elec': model_node('diel_elec', PACKAGED_MODELS / 'diel_elec'),
        'diel_ionic': model_node('diel_ionic', PACKAGED_MODELS / 'diel_ionic'),
    }
    # Models load once per process and the first inference in a process pays a one-off start-up: both
    # are done before the first run is timed, on another structure, so that it times one batch's work.
    model_sets = {target: load_model_node(node) for target, node in models.items()}
    rows = [
        row.structure for row in itertools.islice(read_rows(petousis_csv), 2 * BATCH) if isinstance(row, Row)
    ]
    assert len(rows) > BATCH
    predict(rows[-1:], model_sets)
    structures = {f's{i}': StructureData(pymatgen=structure) for i, structure in enumerate(rows[:BATCH])}
    inputs = {
        'structures': structures,
        'models': models,
        'parameters': Dict({'batch_size': 64, 'labels': True}),
    }

    start = time.perf_counter()
    first_outputs, first = run_in_bulk(predict_structures, **inputs)
    first_time = time.perf_counter() - start
    with enable_caching(identifier=first.process_type):
        start = time.perf_counter()
        outputs, cached = run_in_bulk(predict_structures, **inputs)
        cached_time = time.perf_counter() - start
        start = time.perf_counter()
        _, engine = predict_structures.run_get_node(**inputs)
        engine_time = time.perf_counter() - start

    assert cached.base.caching.get_cache_source() == first.uuid
    assert engine.base.caching.get_cache_source() in (first.uuid, cached.uuid)
    predicted = first_outputs['report']['predicted']
    assert predicted == len(outputs['predictions']) == len(engine.outputs.predictions) > BATCH // 2
    for key, prediction in outputs['predictions'].items():
        original = first_outputs['predictions'][key]
        assert prediction.pk != original.pk
        assert prediction.base.attributes.all == original.base.attributes.all
        assert prediction.base.caching.get_hash() == original.base.caching.get_hash()
    ratio = cached_time / first_time
    print(
        f'\n{BATCH} structures, {predicted} predictions: first run {first_time:.2f} s, cached re-run '
        f'{cached_time:.2f} s ({ratio:.1%} of the first), engine cached run {engine_time:.2f} s'
    )
    assert ratio < 0.25, f'cached re-run took {ratio:.0%} of the first run'
