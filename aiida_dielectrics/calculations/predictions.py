"""Prediction as an AiiDA process: structure and model nodes in, one ``dielectrics.prediction`` per structure.

:func:`predict_structures` is one calcfunction over a whole batch, so every prediction links (through
the process) to its structure and to the model nodes that made it, at the cost of one process node per
batch rather than per structure; :func:`run_prediction` writes that graph in bulk. The work itself is
:func:`aiida_dielectrics.ml.inference.predict`, which needs no profile.
"""

from __future__ import annotations

import pathlib
import tempfile

from aiida.common.links import LinkType
from aiida.engine import calcfunction
from aiida.orm import Dict, QueryBuilder, StructureData

from aiida_dielectrics.data.model import ModelData
from aiida_dielectrics.data.prediction import PredictionData
from aiida_dielectrics.ml.files import tree_sha256
from aiida_dielectrics.tools.provenance import run_in_bulk

#: Model inputs: ``models.<target>``; E_form (and with it the hull energy) is optional.
REQUIRED_MODELS = ('band_gap', 'diel_elec', 'diel_ionic')

#: Loaded model sets by model node UUID: the files of a stored node never change, so a second batch
#: with the same models skips exporting and loading them again.
_LOADED: dict[str, object] = {}


def load_model_node(node: ModelData):
    """The :class:`~.ml.loading.ModelSet` of a stored model node (exported once, then cached)."""
    from aiida_dielectrics.ml.loading import load_model_set

    if node.uuid not in _LOADED:
        with tempfile.TemporaryDirectory() as folder:
            _LOADED[node.uuid] = load_model_set(node.target, node.export_to(pathlib.Path(folder) / 'model'))
    return _LOADED[node.uuid]


@calcfunction
def predict_structures(**inputs) -> dict:
    """Predict ``structures.<key>`` with ``models.<target>``; outputs ``predictions.<key>`` and ``report``.

    Structures that cannot be predicted are listed with their reason in ``report['skipped']``. The
    models give no hull energy: ``e_above_hull.<key>`` (``Float``, e.g. from
    :func:`.calculations.hull.hull_energies` on the relaxed structure) is recorded on the prediction of
    ``<key>``, so the prediction links to the hull it was measured against. ``parameters``:
    ``batch_size`` and ``labels`` (:data:`.ml.job.DEFAULTS`). The same batch runs as a job on any computer
    with :class:`.predict_job.PredictCalculation`.
    """
    from aiida_dielectrics.ml.job import predict_records

    structures, models = inputs.get('structures', {}), inputs.get('models', {})
    problem = missing_models(models)
    if problem is not None:
        raise ValueError(problem)
    keys = sorted(structures)
    model_sets = {target: load_model_node(node) for target, node in models.items()}
    parameters = inputs['parameters'].get_dict() if 'parameters' in inputs else {}
    records = predict_records([pymatgen_structure(structures[key]) for key in keys], model_sets, parameters)
    return prediction_outputs(keys, records, inputs.get('e_above_hull', {}))


def missing_models(models) -> str | None:
    """Why ``models`` (by target) cannot make a prediction batch, or ``None``."""
    missing = [target for target in REQUIRED_MODELS if target not in models]
    return f'models.{", models.".join(missing)} missing' if missing else None


def prediction_outputs(keys: list[str], records: list[dict], hull_energies) -> dict:
    """The outputs of a batch (``predictions``, ``report``) from its records (:func:`.ml.job.predict_records`)
    in the order of ``keys``; ``hull_energies``: ``Float`` nodes by key, recorded on their predictions."""
    from aiida_dielectrics.ml.inference import COLUMNS, TARGETS

    # The predicted columns go to PredictionData, which derives the rest (ε_total, Φ, Φ_adj).
    predicted = [name for name in COLUMNS if name.removesuffix('_std') in (*TARGETS, 'e_above_hull')]
    predictions, skipped = {}, {}
    for key, record in zip(keys, records, strict=True):
        if record['reason'] is not None:
            skipped[key] = record['reason']
            continue
        values = {name: record[name] for name in predicted}
        if key in hull_energies:
            values.update(e_above_hull=hull_energies[key].value, e_above_hull_std=None)
        predictions[key] = PredictionData(
            formula=record['formula'], protostructure=record['protostructure'], **values
        )
    return {'predictions': predictions, 'report': Dict({'predicted': len(predictions), 'skipped': skipped})}


def pymatgen_structure(node: StructureData):
    """The pymatgen ``Structure`` of a node, read straight from its attributes for the usual case of
    periodic, ordered sites: 0.4 ms instead of ``get_pymatgen()``'s 1.1 ms, a tenth of a campaign's
    storage overhead."""
    from pymatgen.core import Structure

    attributes = node.base.attributes
    kinds = {kind['name']: kind for kind in attributes.get('kinds')}
    ordered = all(len(kind['symbols']) == 1 and kind['weights'][0] == 1.0 for kind in kinds.values())
    if not ordered or not all(node.pbc):
        return node.get_pymatgen()
    sites = attributes.get('sites')
    return Structure(
        attributes.get('cell'),
        [kinds[site['kind_name']]['symbols'][0] for site in sites],
        [site['position'] for site in sites],
        coords_are_cartesian=True,
    )


def prediction_inputs(
    structures: dict,
    models: dict,
    batch_size: int = 64,
    labels: bool = True,
    e_above_hull: dict | None = None,
) -> dict:
    """The inputs of a prediction batch: the same for :func:`predict_structures` and for
    :class:`.predict_job.PredictCalculation`, so that both make the same nodes.

    ``labels=False`` skips the protostructure labels; ``e_above_hull``: hull energies by key (``Float``).
    """
    inputs = {
        'structures': structures,
        'models': models,
        'parameters': Dict({'batch_size': batch_size, 'labels': labels}),
    }
    if e_above_hull:
        inputs['e_above_hull'] = e_above_hull
    return inputs


def run_prediction(
    structures: dict,
    models: dict,
    batch_size: int = 64,
    labels: bool = True,
    e_above_hull: dict | None = None,
    metadata: dict | None = None,
):
    """Run :func:`predict_structures` with its provenance written in bulk (:func:`.provenance.run_in_bulk`).

    The graph is the one the engine would write, without its 30–100 ms validation query per link (two
    links per structure). The arguments are those of :func:`prediction_inputs`; ``metadata`` that of the
    process (e.g. ``call_link_label``). Returns ``(outputs, process_node)``.
    """
    inputs = prediction_inputs(structures, models, batch_size, labels, e_above_hull)
    return run_in_bulk(predict_structures, metadata, **inputs)


def model_node(target: str, model, architecture: str = 'megnet', directory=None) -> ModelData:
    """The stored model node with the files of ``model``, created (and stored) on first use.

    ``model`` is a folder or a name, found as :func:`.ml.loading.resolve` finds it (``directory`` or
    ``$AIIDA_DIELECTRICS_MODEL_DIR``, the package, else downloaded from the Hugging Face Hub by matgl's
    rules into matgl's cache). Reusing the node keeps every prediction made with the same files linked to
    one model node.
    """
    from aiida_dielectrics.ml.loading import resolve

    folder = resolve(model, directory).resolve()
    sha256 = tree_sha256(folder)
    query = QueryBuilder().append(
        ModelData, filters={'attributes.sha256': sha256, 'attributes.target': target}, project='*'
    )
    existing = query.first(flat=True)
    if existing is not None:
        return existing
    card = folder / 'model_card.json'
    if card.is_file():  # an ensemble names its own architecture
        import json

        architecture = json.loads(card.read_text()).get('architecture', architecture)
    return ModelData(folder=folder, target=target, architecture=architecture).store()


def structure_of(prediction: PredictionData) -> StructureData:
    """The structure a prediction was made for: the input of its process under the same key."""
    link = prediction.base.links.get_incoming(link_type=LinkType.CREATE).one()
    key = link.link_label.removeprefix('predictions__')
    return link.node.base.links.get_incoming(link_label_filter=f'structures__{key}').one().node
