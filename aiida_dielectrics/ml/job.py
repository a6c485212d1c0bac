"""The program of the prediction ``CalcJob``: ``python -m aiida_dielectrics.ml.job`` in its job folder.

It reads :data:`INPUT` (structures as pymatgen dicts by key, model folders by target, the inference
parameters), runs :func:`.inference.predict` and writes :data:`OUTPUT`: one record per key. It needs the
package installed and no AiiDA profile, so any computer (a GPU node of a cluster) can run it. The
in-process calcfunction makes its records with :func:`predict_records` too, and both turn records into
prediction nodes the same way, so the two paths give the same nodes.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

#: File the job reads: ``structures`` (``Structure.as_dict()`` by key), ``models`` (folders relative to
#: the job folder, by target) and ``parameters``.
INPUT = 'input.json'
#: File the job writes: ``{key: {column: value}}`` with the columns of :data:`.inference.COLUMNS`, NaN as null.
OUTPUT = 'predictions.json'
#: Inference parameters a prediction batch takes, with their defaults.
DEFAULTS = {'batch_size': 64, 'labels': True}


def predict_records(structures: Sequence, model_sets: dict, parameters: dict) -> list[dict]:
    """:func:`.inference.predict` with ``parameters`` (:data:`DEFAULTS`), one row per structure as a dict of
    plain values, missing ones ``None``: what JSON and node attributes hold, so a record read back from
    :data:`OUTPUT` equals the one made in-process (JSON writes floats exactly)."""
    from aiida_dielectrics.ml.inference import is_missing, predict

    options = {name: parameters.get(name, default) for name, default in DEFAULTS.items()}
    table = predict(structures, model_sets, **options)
    return [
        {name: None if is_missing(value) else value for name, value in row.items()}
        for row in table.to_dict('records')
    ]


def run(folder: pathlib.Path) -> None:
    """Read :data:`INPUT` in ``folder``, predict, write :data:`OUTPUT` there."""
    from pymatgen.core import Structure

    from aiida_dielectrics.ml.loading import load_model_set

    job = json.loads((folder / INPUT).read_text())
    keys = list(job['structures'])
    structures = [Structure.from_dict(job['structures'][key]) for key in keys]
    model_sets = {target: load_model_set(target, folder / path) for target, path in job['models'].items()}
    records = predict_records(structures, model_sets, job['parameters'])
    (folder / OUTPUT).write_text(json.dumps(dict(zip(keys, records, strict=True))))


if __name__ == '__main__':
    run(pathlib.Path.cwd())
