"""An ensemble member on frozen universal-potential embeddings: pymatgen structures in, an MLP head's
prediction out (architecture ``embedding-mlp``; pure, no AiiDA).

The structures are embedded by the pretrained potentials (:mod:`.embeddings`: SevenNet-0 by default, the
per-layer means of its node features), and a small MLP (:class:`.heads.MLPHead`) maps the standardised
vector to the transformed target. It implements the member interface of :mod:`.ensemble`, so training,
calibration, cross-validation, evaluation and inference treat it like a MEGNet or Wren member. All members
of a process share one embedding per structure (:func:`.embeddings.embed` keeps recent ones in memory),
so five members for ε_elec and five for ε_ionic cost one forward pass of the potential.

On disk a member is ``head.npz`` (scaler, target normaliser, weights) and ``model.json`` (architecture,
hyper-parameters, the potentials' versions): a prediction runs the head in numpy, with no torch module
to unpickle.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from aiida_dielectrics.ml import embeddings, heads

#: The hyper-parameters :meth:`EmbeddingMLPMember.select_hyperparameters` chooses among by inner CV.
SEARCHED = {'layers': [1, 2]}


class EmbeddingMLPMember:
    """An MLP head on frozen embeddings of ``potentials`` pooled as ``pooling`` (:data:`.embeddings.POOLINGS`).

    ``layers=None`` means: choose the number of hidden layers (and the epoch budget) by grouped 3-fold CV
    inside the training data, once per ensemble (:meth:`select_hyperparameters`).
    """

    architecture = 'embedding-mlp'

    def __init__(
        self,
        potentials=('sevennet-0',),
        pooling: str = 'layers',
        layers: int | None = None,
        width: int = 128,
        dropout: float = 0.1,
        weight_decay: float = 1e-3,
        lr: float = 2e-3,
        max_epochs: int = 200,
        batch_size: int = 256,
        bagging: bool = True,
    ):
        self.potentials = tuple(potentials)
        unknown = [p for p in self.potentials if p not in embeddings.POTENTIALS]
        if unknown or not self.potentials:
            raise ValueError(f'potentials must be among {", ".join(embeddings.POTENTIALS)}, not {unknown}')
        if pooling not in embeddings.POOLINGS:
            raise ValueError(f'unknown pooling {pooling!r}; choose from {", ".join(embeddings.POOLINGS)}')
        self.pooling = pooling
        self.layers = None if layers is None else int(layers)
        self.width, self.dropout, self.weight_decay = int(width), float(dropout), float(weight_decay)
        self.lr, self.max_epochs, self.batch_size = float(lr), int(max_epochs), int(batch_size)
        self.bagging = bool(bagging)
        self.head: heads.MLPHead | None = None
        self.versions: dict[str, str] = {}

    @property
    def hyperparameters(self) -> dict:
        return {
            'potentials': list(self.potentials),
            'pooling': self.pooling,
            'layers': self.layers,
            'width': self.width,
            'dropout': self.dropout,
            'weight_decay': self.weight_decay,
            'lr': self.lr,
            'max_epochs': self.max_epochs,
            'batch_size': self.batch_size,
            'bagging': self.bagging,
        }

    def _head(self, layers: int, epochs: int) -> heads.MLPHead:
        return heads.MLPHead(
            width=self.width,
            layers=layers,
            weight_decay=self.weight_decay,
            dropout=self.dropout,
            lr=self.lr,
            epochs=epochs,
            batch_size=self.batch_size,
        )

    def features(self, structures) -> np.ndarray:
        """The feature matrix (structures × features); ``ValueError`` for an element a potential lacks."""
        blocks = []
        for potential in self.potentials:
            embedder = embeddings.load_embedder(potential)
            for index, structure in enumerate(structures):
                missing = {site.specie.symbol for site in structure} - embedder.elements
                if missing:
                    raise ValueError(f'structure {index}: {potential} has no {", ".join(sorted(missing))}')
            trained = self.versions.setdefault(potential, embedder.version)
            if trained != embedder.version:
                raise ValueError(f'this member was trained on {trained} embeddings, not {embedder.version}')
            blocks.append(
                embeddings.features(embeddings.embed(structures, potential=potential), self.pooling)
            )
        return np.concatenate(blocks, axis=1)

    def structure_problem(self, structure) -> str | None:
        """Why this member cannot predict ``structure`` (an element a potential was not trained on)."""
        for potential in self.potentials:
            missing = {site.specie.symbol for site in structure} - embeddings.load_embedder(
                potential
            ).elements
            if missing:
                return f'{potential} was not trained on {", ".join(sorted(missing))}'
        return None

    @classmethod
    def select_hyperparameters(cls, structures, y, groups, seed: int = 0, **hyperparameters) -> dict:
        """``hyperparameters`` with ``layers`` (if unset) and ``max_epochs`` chosen by grouped 3-fold CV on
        the given training data alone (:func:`.heads.inner_cv_select`): the number of hidden layers with
        the lowest CV MAE, and the mean of its early-stopped best epochs as the epoch budget."""
        member = cls(**hyperparameters)
        if member.layers is not None:
            return member.hyperparameters
        fixed = {
            'width': member.width,
            'dropout': member.dropout,
            'weight_decay': member.weight_decay,
            'lr': member.lr,
            'epochs': member.max_epochs,
            'batch_size': member.batch_size,
        }
        chosen, _ = heads.inner_cv_select(
            'mlp', member.features(structures), y, groups, 3, seed, spec=SEARCHED, fixed=fixed
        )
        return {**member.hyperparameters, 'layers': chosen['layers'], 'max_epochs': chosen['epochs']}

    def fit(self, structures, y, val=None, seed: int = 0) -> dict:
        """Fit the head; with ``val`` the weights of the epoch with the lowest validation MAE are kept.

        With ``bagging`` the head learns from a bootstrap resample of the training rows drawn with
        ``seed``: members that differ only in their initial weights agree far more closely than their
        errors warrant, and by an amount that changes from one training set to the next, so the σ scale
        fitted on one fit (cross-validation) would not carry over to another (the shipped ensemble)."""
        X, y = self.features(structures), np.asarray(y, dtype=float)
        if self.bagging:
            rows = np.random.default_rng(seed).integers(0, len(y), len(y))
            X, y = X[rows], y[rows]
        val = (self.features(val[0]), np.asarray(val[1], dtype=float)) if val is not None else None
        self.head = self._head(self.layers or 1, self.max_epochs).fit(X, y, val=val, seed=seed)
        history = self.head.history
        return {
            'epochs': self.max_epochs,
            'best_epoch': self.head.best_epoch,
            'best_val_mae': float(min(history)) if history else None,
        }

    def predict(self, structures) -> np.ndarray:
        """Predictions in the transformed space."""
        if self.head is None:
            raise RuntimeError('EmbeddingMLPMember has not been fitted or loaded')
        if not len(structures):
            return np.zeros(0)
        return self.head.predict(self.features(structures))

    def save(self, folder) -> None:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / 'head.npz', **self.head.arrays())
        meta = {
            '@class': f'{type(self).__module__}:{type(self).__name__}',
            'architecture': self.architecture,
            'hyperparameters': self.hyperparameters,
            'potential_versions': self.versions,
        }
        (folder / 'model.json').write_text(json.dumps(meta, indent=2) + '\n')

    @classmethod
    def load(cls, folder) -> EmbeddingMLPMember:
        folder = pathlib.Path(folder)
        meta = json.loads((folder / 'model.json').read_text())
        if meta.get('architecture') != cls.architecture:
            raise ValueError(
                f'{folder} holds a {meta.get("architecture")!r} model, not an embedding-mlp member'
            )
        member = cls(**meta['hyperparameters'])
        with np.load(folder / 'head.npz', allow_pickle=False) as arrays:
            member.head = heads.MLPHead.from_arrays(dict(arrays), member._head(member.layers or 1, 0))
        member.versions = dict(meta.get('potential_versions', {}))
        return member
