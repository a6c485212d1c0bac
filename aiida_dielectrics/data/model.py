"""``dielectrics.model``: a trained model or ensemble, its files inside the node."""

from __future__ import annotations

import pathlib

from aiida.orm import FolderData

from aiida_dielectrics.data.attributes import attribute_property
from aiida_dielectrics.ml.files import MATGL_FILES, model_folders, tree_sha256


class ModelData(FolderData):
    """A trained model, or an ensemble of them (one sub-folder per member), in matgl's file layout.

    Attributes: ``target`` (the predicted quantity, e.g. ``band_gap``), ``architecture``
    (e.g. ``MEGNet``), ``members`` (ensemble size), ``sha256`` of the files, and the free-form
    ``metrics`` and ``hyperparameters`` dicts that make up the model card.
    """

    def __init__(
        self,
        *,
        folder,
        target: str,
        architecture: str,
        metrics: dict | None = None,
        hyperparameters: dict | None = None,
        **kwargs,
    ):
        root = pathlib.Path(folder)
        if not root.is_dir():
            raise ValueError(f'model folder {root} does not exist')
        members = model_folders(root)
        if not members:
            raise ValueError(f'{root} holds no model: expected model.json in it or in its sub-folders')
        for member in members:
            required = ('head.npz', 'model.json') if architecture == 'embedding-mlp' else MATGL_FILES
            missing = [name for name in required if not (member / name).is_file()]
            if missing:
                raise ValueError(f'model folder {member} lacks {", ".join(missing)}')
        super().__init__(tree=root, **kwargs)
        self.base.attributes.set_many(
            {
                'target': target,
                'architecture': architecture,
                'members': len(members),
                'sha256': tree_sha256(root),
                'metrics': metrics or {},
                'hyperparameters': hyperparameters or {},
            }
        )

    target = attribute_property('target')
    architecture = attribute_property('architecture')
    members = attribute_property('members')
    metrics = attribute_property('metrics')
    hyperparameters = attribute_property('hyperparameters')

    def export_to(self, destination) -> pathlib.Path:
        """Write the model files to ``destination`` (a folder) so a framework can load them."""
        destination = pathlib.Path(destination)
        destination.mkdir(parents=True, exist_ok=True)
        self.base.repository.copy_tree(destination)
        return destination
