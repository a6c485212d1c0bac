"""Ensembles of regressors for one ε target; one member interface for every architecture.

A member learns a scalar in the *transformed* space (see :mod:`.transforms`) and implements::

    member = MemberClass(**hyperparameters)
    member.fit(structures, y, val=(structures, y) | None, seed=0) -> dict   # training history
    member.predict(structures) -> np.ndarray                               # transformed space
    member.save(folder); MemberClass.load(folder)

:class:`Ensemble` maps member outputs back with :func:`.transforms.inverse_transform` and takes the
mean and σ over members in the ORIGINAL space (ε), where they are used. The member spread alone is
over-confident, so σ is multiplied by the card's ``sigma_scale`` (fitted on the validation part by
:func:`fit_sigma_scale`; 1 for cards without it). On disk an ensemble is a folder with
``model_card.json`` and ``member_0/ … member_K/`` (for MEGNet, matgl's ``model.pt``,
``state.pt``, ``model.json``: the member is a ``TransformedTargetModel`` whose output is already
de-normalised into the transformed space, to be called with ``state_attr = [0]``, the PBE fidelity of
the band-gap model it is fine-tuned from).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import pathlib

import numpy as np
import torch

from aiida_dielectrics.ml.files import ARCHITECTURES, CARD, tree_sha256
from aiida_dielectrics.ml.graphs import collate, shared_builder
from aiida_dielectrics.ml.loading import allow_matgl_pickles, load_matgl
from aiida_dielectrics.ml.transforms import MemberSpread


def member_class(architecture: str):
    """The member class of an architecture, e.g. ``member_class('megnet')``."""
    try:
        module, name = ARCHITECTURES[architecture].split(':')
    except KeyError:
        raise ValueError(
            f'unknown architecture {architecture!r}; choose from {", ".join(ARCHITECTURES)}'
        ) from None
    return getattr(importlib.import_module(module), name)


class MEGNetMember:
    """MEGNet fine-tuned from a pretrained matgl MEGNet (default: the multi-fidelity band-gap model).

    Starting from pretrained weights matters here: 1,056 training materials are far too few to learn
    element embeddings and bonding from scratch, and the band gap is what ε_elec correlates with most.
    """

    architecture = 'megnet'

    def __init__(
        self,
        pretrained: str | None = None,
        max_epochs: int = 30,
        batch_size: int = 32,
        lr: float = 1e-3,
        state_attr: int = 0,
        model=None,
    ):
        self.pretrained = pretrained
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.state_attr = state_attr
        self.model = model

    @property
    def hyperparameters(self) -> dict:
        return {
            'pretrained': pathlib.Path(self.pretrained).name if self.pretrained else None,
            'max_epochs': self.max_epochs,
            'batch_size': self.batch_size,
            'lr': self.lr,
            'state_attr': self.state_attr,
        }

    def _graphs(self, structures) -> list[tuple]:
        """``(graph, lattice, state)`` per structure, built once per process for every member."""
        inner = self.model.model
        builder = shared_builder(float(inner.cutoff), inner.element_types)
        return [builder.build(structure) for structure in structures]

    def _samples(self, structures, y):
        state = torch.tensor(self.state_attr, dtype=torch.long)
        return [
            (graph, lattice, state, {'y': torch.tensor(v, dtype=torch.float32)})
            for (graph, lattice, _), v in zip(
                self._graphs(structures), np.asarray(y, dtype=float), strict=True
            )
        ]

    def _loader(self, samples, shuffle: bool, seed: int = 0):
        from matgl.graph.data import collate_fn_graph

        return torch.utils.data.DataLoader(
            samples,
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=collate_fn_graph,
            generator=torch.Generator().manual_seed(seed),
        )

    def fit(self, structures, y, val=None, seed: int = 0) -> dict:
        """Fine-tune on (structures, y); keeps the weights of the epoch with the lowest validation MAE."""
        import lightning as pl
        import matgl
        from matgl.data.transformer import Normalizer
        from matgl.models import TransformedTargetModel
        from matgl.utils.training import ModelLightningModule

        if not self.pretrained:
            raise ValueError('MEGNetMember needs `pretrained`: a matgl MEGNet folder or model name')
        allow_matgl_pickles()
        torch.manual_seed(seed)
        base = matgl.load_model(self.pretrained)
        megnet = copy.deepcopy(getattr(base, 'model', base))
        # The read-out was trained for another target; re-drawing it per seed also decorrelates members.
        for layer in megnet.output_proj.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()
        y = np.asarray(y, dtype=float)
        mean, std = float(y.mean()), float(y.std() or 1.0)
        module = ModelLightningModule(
            model=megnet,
            data_mean=mean,
            data_std=std,
            lr=self.lr,
            loss='l1_loss',
            decay_steps=max(1, self.max_epochs * int(np.ceil(len(y) / self.batch_size))),
        )
        self.model = TransformedTargetModel(megnet, Normalizer(mean, std))
        train = self._loader(self._samples(structures, y), shuffle=True, seed=seed)
        best = _best_weights(megnet)
        callbacks = [best]
        val_loader = self._loader(self._samples(*val), shuffle=False) if val is not None else None
        trainer = pl.Trainer(
            max_epochs=self.max_epochs,
            accelerator='cpu',
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
            deterministic=False,
        )
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val_loader)
        best.restore()
        return {'epochs': trainer.current_epoch, 'best_epoch': best.epoch, 'best_val_mae': best.score}

    def predict(self, structures) -> np.ndarray:
        """Predictions in the transformed space, in batches."""
        self.model.eval()
        graphs = self._graphs(structures)
        out = []
        with torch.no_grad():
            for start in range(0, len(graphs), self.batch_size):
                graph, _ = collate(graphs[start : start + self.batch_size])
                state = torch.full((graph.num_graphs,), self.state_attr, dtype=torch.long)
                out.append(self.model(graph, state_attr=state).reshape(-1).numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def save(self, folder):
        self.model.save(str(folder))

    @classmethod
    def load(cls, folder):
        return cls(model=load_matgl(folder))


def _best_weights(model):
    """A Lightning callback that remembers the weights of the epoch with the lowest validation MAE."""
    import lightning as pl

    class BestWeights(pl.Callback):
        def __init__(self):
            self.model, self.state, self.epoch, self.score = model, None, None, None

        def on_validation_epoch_end(self, trainer, module):
            if trainer.sanity_checking:
                return
            score = float(trainer.callback_metrics.get('val_MAE', np.nan))
            if self.score is None or score < self.score:
                self.score, self.epoch = score, trainer.current_epoch
                self.state = copy.deepcopy(self.model.state_dict())

        def restore(self):
            if self.state is not None:
                self.model.load_state_dict(self.state)

    return BestWeights()


class Ensemble(MemberSpread):
    """Members of one architecture for one target; mean and σ over members in the original space."""

    def __init__(self, members, target: str, transform: str, architecture: str, card: dict | None = None):
        self.members = list(members)
        self.target = target
        self.transform = transform
        self.architecture = architecture
        self.card = card or {}

    @property
    def sigma_scale(self) -> float:
        """The factor the member spread is multiplied by to give a calibrated σ (1 if never fitted)."""
        return float(self.card.get('sigma_scale', 1.0))

    def predict_transformed(self, structures) -> np.ndarray:
        """(members × structures) predictions in the transformed space."""
        return np.stack([m.predict(structures) for m in self.members])

    def predict(self, structures) -> tuple[np.ndarray, np.ndarray]:
        """Mean and calibrated σ in the original space."""
        return self.summarize(self.predict_transformed(structures))

    def save(self, folder) -> pathlib.Path:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for i, member in enumerate(self.members):
            member.save(folder / f'member_{i}')
        card = {
            **self.card,
            'target': self.target,
            'architecture': self.architecture,
            'transform': self.transform,
            'members': len(self.members),
        }
        card['sha256'] = members_sha256(folder)
        self.card = write_card(folder, card)
        return folder

    @classmethod
    def load(cls, folder) -> Ensemble:
        folder = pathlib.Path(folder)
        card = read_card(folder)
        kind = member_class(card['architecture'])
        members = [kind.load(folder / f'member_{i}') for i in range(card['members'])]
        return cls(members, card['target'], card['transform'], card['architecture'], card)


def fit_sigma_scale(outputs, y) -> float:
    """The σ scale s from held-out data: ``outputs`` (members × points) and truths ``y``, both in the
    transformed space, where the errors of ε (multiplicative) are closer to Gaussian.

    With z = (y − member mean) / member σ, s = √(π/2)·mean|z|: the σ of z if it were Gaussian, estimated
    from the mean absolute z, which the few very large errors (near-metals) sway less than the root mean
    square does. A first-order (delta-method) error maps σ of the transformed target to σ of ε by the
    same factor, so s multiplies σ in the original space.
    """
    outputs = np.asarray(outputs, dtype=float)
    z = (np.asarray(y, dtype=float) - outputs.mean(axis=0)) / outputs.std(axis=0)
    return float(np.sqrt(np.pi / 2) * np.mean(np.abs(z)))


def members_sha256(folder) -> str:
    """sha256 over the member folders (the card itself is excluded, it holds the checksum)."""
    digest = [tree_sha256(path) for path in sorted(pathlib.Path(folder).glob('member_*'))]
    return hashlib.sha256(''.join(digest).encode()).hexdigest()


def json_safe(value):
    """``value`` with NaN/inf (e.g. Spearman ρ of a constant prediction) as ``None``: strict JSON, and
    storable in AiiDA node attributes."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def write_card(folder, card: dict) -> dict:
    """Write ``card`` (made strict JSON) as the folder's model card and return what was written."""
    card = json_safe(card)
    path = pathlib.Path(folder) / CARD
    path.write_text(json.dumps(card, indent=2, sort_keys=True, allow_nan=False) + '\n')
    return card


def read_card(folder) -> dict:
    path = pathlib.Path(folder) / CARD
    if not path.is_file():
        raise FileNotFoundError(f'{folder} is not an ensemble folder: {CARD} missing')
    return json.loads(path.read_text())
