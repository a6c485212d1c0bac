"""Wren: a regressor on protostructure labels (Goodall et al., Sci. Adv. 8, eabn4117, 2022), pure torch.

The input is a protostructure label (:mod:`.protostructure`), not coordinates, so the model can screen
hypothetical crystals before they are relaxed. Each Wyckoff orbit is a node: its element and its
Wyckoff position (space group + letter), weighted by the share of atoms on it. Nodes exchange messages by
weighted soft attention (as in Roost/Wren), are pooled into a crystal vector by the same attention, and
a small MLP reads out one scalar. Every equivalent Wyckoff setting of the label is a separate copy of
the graph and the crystal vector is the mean over copies, so the prediction does not depend on which
setting a label was written in.

Only 1,056 Petousis materials are available, far too few to learn embeddings from scratch, so nodes
start from fixed descriptors (element properties from pymatgen; crystal system, centring, point group,
multiplicity and free parameters of the Wyckoff position) plus small learnt embeddings initialised at
zero: elements or positions never seen in training fall back to their descriptors alone.
"""

from __future__ import annotations

import copy
import itertools
import json
import pathlib
import warnings
import weakref

import numpy as np
import spglib
import torch
from pymatgen.analysis.prototypes._data import WYCKOFF_MULTIPLICITY_DICT
from pymatgen.core import Element
from torch import nn

from aiida_dielectrics.ml import protostructure
from aiida_dielectrics.ml.protostructure import ProtostructureError

#: Elements with descriptors (H … Lr).
MAX_Z = 103

ELEMENT_PROPERTIES = (
    'Z',
    'X',
    'row',
    'group',
    'atomic_mass',
    'atomic_radius',
    'mendeleev_no',
    'ionization_energy',
    'electron_affinity',
    'average_ionic_radius',
    'max_oxidation_state',
    'min_oxidation_state',
    'molar_volume',
)
BLOCKS = ('s', 'p', 'd', 'f')
CRYSTAL_SYSTEM_ENDS = (2, 15, 74, 142, 167, 194, 230)  # last space group of each crystal system
CENTRINGS = ('P', 'C', 'I', 'F', 'R')  # A/B/C-centred count as C


def element_features() -> tuple[np.ndarray, list[str]]:
    """Standardised descriptor table, row ``Z - 1``; missing values take the column mean."""
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # pymatgen warns about elements without some property
        for z in range(1, MAX_Z + 1):
            element = Element.from_Z(z)
            row = []
            for name in ELEMENT_PROPERTIES:
                try:
                    value = getattr(element, name)
                    row.append(np.nan if value is None else float(value))
                except (AttributeError, ValueError, TypeError):
                    row.append(np.nan)
            row += [float(element.block == block) for block in BLOCKS]
            rows.append(row)
    table = np.asarray(rows, dtype=float)
    table = np.where(np.isnan(table), np.nanmean(table, axis=0), table)
    table = (table - table.mean(axis=0)) / np.where(table.std(axis=0) > 0, table.std(axis=0), 1.0)
    return table.astype(np.float32), [*ELEMENT_PROPERTIES, *(f'block_{b}' for b in BLOCKS)]


def wyckoff_keys() -> list[str]:
    """Every Wyckoff position of the 230 space groups as ``'<spg><letter>'``, in a fixed order."""
    return [
        f'{spg}{letter}'
        for spg in range(1, 231)
        for letter in sorted(WYCKOFF_MULTIPLICITY_DICT[str(spg)], key=lambda c: (c.isupper(), c))
    ]


def _point_groups() -> dict[int, tuple[str, str]]:
    """Space group number → (point group, centring letter), from spglib's Hall-symbol database."""
    out: dict[int, tuple[str, str]] = {}
    for hall in range(1, 531):
        kind = spglib.get_spacegroup_type(hall)
        out.setdefault(kind.number, (kind.pointgroup_international, kind.international_short[0]))
    return out


def wyckoff_features(keys) -> np.ndarray:
    """Descriptors of Wyckoff positions: the same for positions related by a change of setting."""
    groups = _point_groups()
    point_groups = sorted({pg for pg, _ in groups.values()})
    rows = []
    for key in keys:
        spg, letter = int(key[:-1]), key[-1]
        point_group, centring = groups[spg]
        centring = 'C' if centring in 'ABC' else centring
        multiplicity = WYCKOFF_MULTIPLICITY_DICT[str(spg)][letter]
        row = [
            float(spg <= end and (i == 0 or spg > CRYSTAL_SYSTEM_ENDS[i - 1]))
            for i, end in enumerate(CRYSTAL_SYSTEM_ENDS)
        ]
        row += [float(centring == c) for c in CENTRINGS]
        row += [float(point_group == pg) for pg in point_groups]
        row += [np.log(multiplicity), multiplicity / protostructure.general_multiplicity(spg)]
        row += [float(protostructure.free_parameters(spg, letter) == n) for n in range(4)]
        rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def _mlp(sizes):
    layers = []
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class AttentionPool(nn.Module):
    """Weighted soft attention (Roost/Wren), several heads averaged, on top of a hidden layer ``h``.

    Per head, the rows with the same ``index`` are summed with weights ``w ** p · softmax(gate)``: the
    attention decides which neighbours matter, ``w`` (share of atoms on a site) how much a site counts.
    Heads share the hidden layer, which keeps the number of small CPU operations down.
    """

    def __init__(self, hidden: int, dim_out: int, heads: int):
        super().__init__()
        self.heads, self.dim_out = heads, dim_out
        self.gate = nn.Linear(hidden, heads)
        self.message = nn.Linear(hidden, heads * dim_out)
        self.power = nn.Parameter(torch.zeros(heads))

    def forward(self, h, weights, index, size):
        logits = self.gate(h)
        shift = torch.full((size, self.heads), -torch.inf).scatter_reduce(
            0, index[:, None].expand_as(logits), logits.detach(), 'amax', include_self=True
        )
        gate = weights[:, None] ** self.power * torch.exp(logits - shift[index])
        gate = gate / (torch.zeros(size, self.heads).index_add(0, index, gate)[index] + 1e-10)
        # The mean over heads commutes with the sum over rows: reduce heads first, scatter once.
        messages = (self.message(h).view(len(h), self.heads, self.dim_out) * gate[:, :, None]).mean(dim=1)
        return torch.zeros(size, self.dim_out).index_add(0, index, messages)


class MessageLayer(nn.Module):
    """Each node attends over all nodes of its graph copy (itself included); residual update.

    The hidden layer of an edge, SiLU(W [x_dst, x_src] + b), is assembled from two node-level products:
    the same function as a layer on the concatenated pair, at a fraction of the cost per edge.
    """

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.to_dst = nn.Linear(dim, hidden)
        self.to_src = nn.Linear(dim, hidden, bias=False)
        self.attention = AttentionPool(hidden, dim, heads)

    def forward(self, x, weights, src, dst):
        h = nn.functional.silu(self.to_dst(x)[dst] + self.to_src(x)[src])
        return x + self.attention(h, weights[src], dst, len(x))


class Wren(nn.Module):
    """Message passing over Wyckoff-site nodes, attention pooling per setting, mean over settings."""

    def __init__(
        self,
        element_table,
        keys,
        dim: int = 64,
        layers: int = 3,
        heads: int = 3,
        embedding: int = 16,
        hidden: int = 128,
        readout=(128, 64),
    ):
        super().__init__()
        # Fixed tables, not weights: saved in state.pt (elements) or rebuilt from the keys (positions).
        table = torch.as_tensor(element_table, dtype=torch.float32)
        self.register_buffer('element_table', table, persistent=False)
        self.register_buffer('wyckoff_table', torch.as_tensor(wyckoff_features(keys)), persistent=False)
        self.element_embedding = nn.Embedding(len(element_table), embedding)
        self.wyckoff_embedding = nn.Embedding(len(keys), embedding)
        nn.init.zeros_(self.element_embedding.weight)
        nn.init.zeros_(self.wyckoff_embedding.weight)
        width = self.element_table.shape[1] + self.wyckoff_table.shape[1] + 2 * embedding
        self.node = nn.Linear(width, dim)
        self.layers = nn.ModuleList(MessageLayer(dim, heads, hidden) for _ in range(layers))
        self.pool_hidden = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU())
        self.pool = AttentionPool(hidden, dim, heads)
        self.readout = _mlp([dim, *readout, 1])

    def forward(self, batch: dict) -> torch.Tensor:
        element, wyckoff, weights = batch['element'], batch['wyckoff'], batch['weight']
        x = self.node(
            torch.cat(
                [
                    self.element_table[element],
                    self.element_embedding(element),
                    self.wyckoff_table[wyckoff],
                    self.wyckoff_embedding(wyckoff),
                ],
                dim=1,
            )
        )
        for layer in self.layers:
            x = layer(x, weights, batch['src'], batch['dst'])
        copies = batch['copies']
        pooled = self.pool(self.pool_hidden(x), weights, batch['copy'], copies)
        crystal, crystals = batch['crystal'], batch['crystals']
        summed = torch.zeros(crystals, pooled.shape[1]).index_add(0, crystal, pooled)
        count = torch.zeros(crystals).index_add(0, crystal, torch.ones(copies))
        return self.readout(summed / count[:, None]).squeeze(1)


class Encoder:
    """Turns labels into index arrays (one graph copy per equivalent setting) and batches them."""

    def __init__(self, keys, n_elements: int):
        self.index = {key: i for i, key in enumerate(keys)}
        self.n_elements = n_elements

    def encode(self, text: str) -> dict:
        proto = protostructure.parse(text)
        elements = np.array([Element(site.element).Z - 1 for site in proto.sites])
        if elements.max() >= self.n_elements:
            raise ProtostructureError(f'{text}: elements beyond Z = {self.n_elements} are not supported')
        try:
            wyckoff = np.array(
                [[self.index[f'{proto.spacegroup}{w}'] for w in aug] for aug in proto.augmentations]
            )
        except KeyError as exc:
            raise ProtostructureError(f'{text}: Wyckoff position {exc} unknown to this model') from None
        weight = np.array([site.multiplicity for site in proto.sites], dtype=np.float32)
        return {'element': elements, 'wyckoff': wyckoff, 'weight': weight / weight.sum()}

    @staticmethod
    def collate(encoded: list[dict]) -> dict:
        parts = {name: [] for name in ('element', 'wyckoff', 'weight', 'src', 'dst', 'copy', 'crystal')}
        nodes = copies = 0
        for c, enc in enumerate(encoded):
            n_copies, n = enc['wyckoff'].shape
            local = np.arange(n)
            for a in range(n_copies):
                parts['element'].append(enc['element'])
                parts['wyckoff'].append(enc['wyckoff'][a])
                parts['weight'].append(enc['weight'])
                parts['src'].append(nodes + np.tile(local, n))
                parts['dst'].append(nodes + np.repeat(local, n))
                parts['copy'].append(np.full(n, copies))
                nodes += n
                copies += 1
            parts['crystal'].append(np.full(n_copies, c))
        batch = {k: torch.as_tensor(np.concatenate(v)) for k, v in parts.items()}
        batch['weight'] = batch['weight'].float()
        batch['copies'], batch['crystals'] = copies, len(encoded)
        return batch


class _LabelCache:
    """Labels computed once per structure object (spglib is the slow step) and reused by every member.

    Keyed on identity; an entry goes when its structure is garbage-collected. Like the graph cache of
    :mod:`.ensemble`, it assumes structures are not modified in place after they were labelled.
    """

    def __init__(self):
        self._labels: dict[int, tuple] = {}

    def get(self, structure, symprec: float) -> str:
        key = id(structure)
        entry = self._labels.get(key)
        if entry is not None and entry[0]() is structure and entry[1] == symprec:
            return entry[2]
        text = protostructure.label(structure, symprec)
        ref = weakref.ref(structure, lambda _, labels=self._labels, key=key: labels.pop(key, None))
        self._labels[key] = (ref, symprec, text)
        return text


_LABELS = _LabelCache()


class WrenMember:
    """An ensemble member (see :mod:`.ensemble`) predicting a transformed target from protostructures.

    ``fit``/``predict`` take pymatgen structures or protostructure label strings (hypothetical
    crystals), mixed freely. A structure that cannot be labelled raises :class:`ProtostructureError`.
    """

    architecture = 'wren'

    def __init__(
        self,
        dim: int = 32,
        layers: int = 2,
        heads: int = 3,
        embedding: int = 16,
        hidden: int = 64,
        readout=(128, 64),
        max_epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        symprec: float = protostructure.SYMPREC,
    ):
        """Defaults: on the Petousis split a 4× larger model (dim 64, hidden 128, 3 layers, weight decay
        1e-4, 150 epochs) reached the same validation MAE, and overfits sooner (docs/topics/wren.md)."""
        self.architecture_kwargs = {
            'dim': dim,
            'layers': layers,
            'heads': heads,
            'embedding': embedding,
            'hidden': hidden,
            'readout': list(readout),
        }
        self.training_kwargs = {
            'max_epochs': max_epochs,
            'batch_size': batch_size,
            'lr': lr,
            'weight_decay': weight_decay,
        }
        self.symprec = symprec
        self.model: Wren | None = None
        self.keys: list[str] = []
        self.y_mean, self.y_std = 0.0, 1.0

    @property
    def hyperparameters(self) -> dict:
        return {**self.architecture_kwargs, **self.training_kwargs, 'symprec': self.symprec}

    def labels(self, items) -> list[str]:
        """Protostructure labels of structures; strings are taken as labels and only checked."""
        out = []
        for index, item in enumerate(items):
            try:
                out.append(
                    protostructure.parse(item).label
                    if isinstance(item, str)
                    else _LABELS.get(item, self.symprec)
                )
            except ProtostructureError as exc:
                raise ProtostructureError(f'item {index}: {exc}') from exc
        return out

    def _encode(self, items) -> list[dict]:
        encoder = Encoder(self.keys, len(self.model.element_table))
        encoded = []
        for index, text in enumerate(self.labels(items)):
            try:
                encoded.append(encoder.encode(text))
            except ProtostructureError as exc:
                raise ProtostructureError(f'item {index}: {exc}') from exc
        return encoded

    def _forward(self, encoded: list[dict]) -> np.ndarray:
        batch_size = self.training_kwargs['batch_size']
        self.model.eval()
        with torch.no_grad():
            out = [
                self.model(Encoder.collate(encoded[i : i + batch_size])).numpy()
                for i in range(0, len(encoded), batch_size)
            ]
        return np.concatenate(out) if out else np.zeros(0)

    def fit(self, structures, y, val=None, seed: int = 0) -> dict:
        """Train from scratch (AdamW, cosine schedule, L1 on the standardised target).

        With ``val`` the weights of the epoch with the lowest validation MAE are kept.
        """
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        y = np.asarray(y, dtype=float)
        self.y_mean, self.y_std = float(y.mean()), float(y.std() or 1.0)
        self.keys = wyckoff_keys()
        self.model = Wren(element_features()[0], self.keys, **self.architecture_kwargs)
        train = self._encode(structures)
        target = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        val_encoded = self._encode(val[0]) if val is not None else None
        epochs, batch_size = self.training_kwargs['max_epochs'], self.training_kwargs['batch_size']
        optimiser = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.training_kwargs['lr'],
            weight_decay=self.training_kwargs['weight_decay'],
        )
        steps = epochs * int(np.ceil(len(train) / batch_size))
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, self.training_kwargs['lr'], total_steps=steps
        )
        history = {'train_mae': [], 'val_mae': []}
        best, best_epoch, best_state = np.inf, epochs - 1, None
        for epoch in range(epochs):
            self.model.train()
            order = rng.permutation(len(train))
            total = 0.0
            for start in range(0, len(train), batch_size):
                chosen = order[start : start + batch_size]
                prediction = self.model(Encoder.collate([train[i] for i in chosen]))
                loss = torch.nn.functional.l1_loss(prediction, target[chosen])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += loss.item() * len(chosen)
            history['train_mae'].append(total / len(train) * self.y_std)
            if val_encoded is not None:
                score = float(np.mean(np.abs(self._predict_encoded(val_encoded) - np.asarray(val[1]))))
                history['val_mae'].append(score)
                if score < best:
                    best, best_epoch, best_state = score, epoch, copy.deepcopy(self.model.state_dict())
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return {
            'epochs': epochs,
            'best_epoch': best_epoch,
            'best_val_mae': None if best_state is None else best,
            'first_train_mae': history['train_mae'][0],
            'final_train_mae': history['train_mae'][-1],
        }

    def _predict_encoded(self, encoded) -> np.ndarray:
        return self._forward(encoded) * self.y_std + self.y_mean

    def predict(self, structures) -> np.ndarray:
        """Predictions in the transformed space for structures and/or protostructure labels."""
        if self.model is None:
            raise RuntimeError('WrenMember has not been fitted or loaded')
        return self._predict_encoded(self._encode(structures))

    def save(self, folder) -> None:
        """``model.pt`` (weights), ``state.pt`` (descriptor tables, position keys, normaliser), ``model.json``."""
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / 'model.pt')
        state = {
            'element_table': self.model.element_table.clone(),
            'wyckoff_keys': self.keys,
            'y_mean': self.y_mean,
            'y_std': self.y_std,
        }
        torch.save(state, folder / 'state.pt')
        meta = {
            '@class': f'{type(self).__module__}:{type(self).__name__}',
            'architecture': self.architecture,
            'hyperparameters': self.hyperparameters,
            'element_properties': element_features()[1],
        }
        (folder / 'model.json').write_text(json.dumps(meta, indent=2) + '\n')

    @classmethod
    def load(cls, folder) -> WrenMember:
        folder = pathlib.Path(folder)
        meta = json.loads((folder / 'model.json').read_text())
        if meta.get('architecture') != cls.architecture:
            raise ValueError(f'{folder} holds a {meta.get("architecture")!r} model, not a Wren member')
        member = cls(**meta['hyperparameters'])
        state = torch.load(folder / 'state.pt', weights_only=True)
        member.keys, member.y_mean, member.y_std = (
            list(state['wyckoff_keys']),
            state['y_mean'],
            state['y_std'],
        )
        member.model = Wren(state['element_table'], member.keys, **member.architecture_kwargs)
        member.model.load_state_dict(torch.load(folder / 'model.pt', weights_only=True))
        return member
