"""Frozen per-structure embeddings from the pretrained universal potentials (pure: no AiiDA).

A universal interatomic potential's node features after its last interaction block describe each atom in
its chemical and structural environment; pooled over the atoms of a structure they are a fixed-length
representation that a small trained head can map to ε (DTNet-style read-outs on frozen features). The
potentials are the ones :func:`aiida_dielectrics.science.relax.load_potential` loads (weights in their
wheels), used **frozen** and without forces (no autograd), one thread as torch is set:

* ``sevennet-0``: the node features after SevenNet-0's fifth (last) interaction block, 128 scalars
  (``128x0e``); the scalar channels of the four blocks before it (``128x0e`` of ``128x0e+64x1e+32x2e``)
  give the per-layer block.
* ``chgnet``: CHGNet's atom features after its last atom-convolution layer (and its read-out norm where
  the model has one), 64 numbers; the outputs of each atom-convolution layer give the per-layer block.

Each structure's embedding is a set of named blocks (:data:`BLOCKS`): ``mean``, ``max`` and ``std`` of
the last-layer node features over the atoms, and ``layers``, the mean over the atoms of every layer's
(scalar) features, concatenated. :func:`features` assembles a feature matrix from blocks (a *pooling*).

:func:`embed` embeds structures in batches and keeps them in an ``.npz`` cache keyed by material id and
structure hash (:func:`structure_hash`), so each structure is embedded once per potential; a cache file
records the potential's version and refuses to mix potentials.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np
from pymatgen.core import Structure

#: Potentials that can embed (the names of :data:`aiida_dielectrics.science.relax.POTENTIALS`).
POTENTIALS = ('sevennet-0', 'chgnet')

#: The per-structure blocks every embedder produces.
BLOCKS = ('mean', 'max', 'std', 'layers')

#: Named poolings: the blocks concatenated into the feature vector.
POOLINGS = {
    'mean': ('mean',),
    'mean+max': ('mean', 'max'),
    'mean+std': ('mean', 'std'),
    'layers': ('layers',),
    'layers+max': ('layers', 'max'),
}

HASH_DECIMALS = 6
CACHE_VERSION = 1
#: Environment variable naming a folder for ``<potential>.npz`` caches (when :func:`embed` is given none):
#: training and evaluating on the same data in several commands then embeds each structure once.
CACHE_ENV = 'AIIDA_DIELECTRICS_EMBEDDING_CACHE'
#: Embeddings kept in memory per potential (by structure hash), about 8 kB each for SevenNet-0.
MEMORY_SIZE = 4096


def structure_hash(structure: Structure) -> str:
    """sha256 (16 hex digits) of the lattice, species and Cartesian positions rounded to
    :data:`HASH_DECIMALS` Å: the same structure gets the same hash in any file or run."""

    def rounded(values):
        return (np.round(np.asarray(values, dtype=float), HASH_DECIMALS) + 0.0).tolist()

    payload = {
        'lattice': rounded(structure.lattice.matrix),
        'species': [site.species_string for site in structure],
        'positions': rounded(structure.cart_coords),
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def cache_key(material_id: str, structure: Structure) -> str:
    return f'{material_id}#{structure_hash(structure)}'


def pool(layers: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`BLOCKS` of one structure from its per-layer node features (atoms × channels each; the
    last entry is the last interaction block's)."""
    last = np.asarray(layers[-1], dtype=np.float64)
    return {
        'mean': last.mean(axis=0),
        'max': last.max(axis=0),
        'std': last.std(axis=0),
        'layers': np.concatenate([np.asarray(x, dtype=np.float64).mean(axis=0) for x in layers]),
    }


# --- embedders ------------------------------------------------------------------------------------------


class Embedder:
    """Node features of one potential; :meth:`node_features` maps a batch of structures to, per structure,
    the list of per-layer node-feature arrays (atoms × channels)."""

    name: str
    version: str

    def node_features(self, structures: Sequence[Structure]) -> list[list[np.ndarray]]:
        raise NotImplementedError

    def embed_batch(self, structures: Sequence[Structure]) -> list[dict[str, np.ndarray]]:
        return [pool(layers) for layers in self.node_features(structures)]


class SevenNetEmbedder(Embedder):
    """SevenNet-0 run up to its last interaction block (the energy read-out and forces are skipped)."""

    name = 'sevennet-0'

    def __init__(self, device: str = 'cpu'):
        import copy

        from aiida_dielectrics.science.relax import load_potential

        potential = load_potential('sevennet-0', device)
        # A copy: batching switches the modules' batch mode, and the relaxer shares the loaded model.
        self.model = copy.deepcopy(potential.calculator.model).eval()
        self.model.set_is_batch_data(True)
        self.cutoff = float(potential.calculator.cutoff)
        self.device = device
        self.version = potential.version
        names = list(self.model._modules)
        self.modules = [self.model._modules[n] for n in names[: names.index('reduce_input_to_hidden')]]
        self.gates = {n for n in names if n.endswith('_equivariant_gate')}
        self.scalar_channels = {
            n: self.model._modules[n].gate.irreps_out.slices()[0].stop for n in self.gates
        }  # 0e channels come first in each block's output irreps
        self.elements = potential.elements

    def node_features(self, structures):
        import torch
        from pymatgen.io.ase import AseAtomsAdaptor
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        graphs = [
            AtomGraphData.from_numpy_dict(
                unlabeled_atoms_to_graph(AseAtomsAdaptor.get_atoms(s), self.cutoff, with_shift=False)
            )
            for s in structures
        ]
        data = Batch.from_data_list(graphs).to(self.device)
        layers = []
        with torch.no_grad():
            data = self.model._preprocess(data)
            for name, module in zip(
                [n for n in self.model._modules][: len(self.modules)], self.modules, strict=True
            ):
                data = module(data)
                if name in self.gates:
                    layers.append(data['x'][:, : self.scalar_channels[name]].detach().cpu().numpy())
        owner = data['batch'].cpu().numpy()
        return [[x[owner == k] for x in layers] for k in range(len(structures))]


class CHGNetEmbedder(Embedder):
    """CHGNet's atom features, read from its atom-convolution layers by forward hooks (energy only)."""

    name = 'chgnet'

    def __init__(self, device: str = 'cpu'):
        from aiida_dielectrics.science.relax import load_potential

        potential = load_potential('chgnet', device)
        self.model = potential.calculator.model
        self.version = potential.version
        self.device = device
        self.elements = potential.elements

    def node_features(self, structures):
        import torch

        captured: list = []
        convs = list(self.model.atom_conv_layers)
        hooks = [conv.register_forward_hook(lambda _m, _i, out: captured.append(out)) for conv in convs]
        if self.model.readout_norm is not None:
            # the last layer's features are read after the read-out norm, as the energy head sees them
            hooks.append(
                self.model.readout_norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
            )
        try:
            graphs = [self.model.graph_converter(s) for s in structures]
            with torch.no_grad():
                self.model.eval()
                result = self.model([g.to(self.device) for g in graphs], task='e')
        finally:
            for hook in hooks:
                hook.remove()
        if self.model.readout_norm is not None:
            captured = [*captured[: len(convs) - 1], captured[-1]]
        counts = result['atoms_per_graph'].tolist()
        layers = [torch.split(x.detach().cpu(), counts) for x in captured]
        return [[layer[k].numpy() for layer in layers] for k in range(len(structures))]


EMBEDDERS: dict[str, type[Embedder]] = {'sevennet-0': SevenNetEmbedder, 'chgnet': CHGNetEmbedder}
_LOADED: dict[tuple[str, str], Embedder] = {}
#: potential version → structure hash → (blocks, seconds), oldest first (see :func:`embed`).
_MEMORY: dict[str, collections.OrderedDict] = {}


def load_embedder(name: str, device: str = 'cpu') -> Embedder:
    """The embedder of potential ``name`` (loaded once per process)."""
    if name not in EMBEDDERS:
        raise ValueError(f'unknown potential {name!r}; choose one of {", ".join(EMBEDDERS)}')
    if (name, device) not in _LOADED:
        _LOADED[(name, device)] = EMBEDDERS[name](device)
    return _LOADED[(name, device)]


# --- the cache ------------------------------------------------------------------------------------------


class EmbeddingCache:
    """Embeddings of one potential in an ``.npz`` file: ``keys`` (material id ``#`` structure hash), one
    array per block and ``seconds`` (embedding time of each structure); ``meta`` holds the potential and
    its version. Written atomically (a temporary file, then renamed)."""

    def __init__(self, path: str | pathlib.Path | None, potential: str, version: str):
        self.path = pathlib.Path(path) if path is not None else None
        self.potential, self.version = potential, version
        self.rows: dict[str, dict[str, np.ndarray]] = {}
        self.seconds: dict[str, float] = {}
        if self.path is not None and self.path.is_file():
            self._read()

    def _read(self):
        with np.load(self.path, allow_pickle=False) as data:
            meta = json.loads(str(data['meta']))
            if meta.get('potential') != self.potential or meta.get('version') != self.version:
                raise ValueError(
                    f'{self.path} holds embeddings of {meta.get("version")!r}, not of {self.version!r}'
                )
            arrays = {block: data[block] for block in BLOCKS}  # each read once: npz members load lazily
            seconds = data['seconds']
            for i, key in enumerate(data['keys'].tolist()):
                self.rows[key] = {block: arrays[block][i] for block in BLOCKS}
                self.seconds[key] = float(seconds[i])

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, key: str, blocks: dict[str, np.ndarray], seconds: float):
        self.rows[key] = blocks
        self.seconds[key] = seconds

    def save(self):
        if self.path is None or not self.rows:
            return
        keys = list(self.rows)
        arrays = {block: np.stack([self.rows[k][block] for k in keys]) for block in BLOCKS}
        meta = {'potential': self.potential, 'version': self.version, 'cache_version': CACHE_VERSION}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f'{self.path.name}.{os.getpid()}.tmp.npz')  # one per writer
        np.savez(
            temporary,
            keys=np.array(keys),
            seconds=np.array([self.seconds[k] for k in keys]),
            meta=np.array(json.dumps(meta)),
            **arrays,
        )
        os.replace(temporary, self.path)


class Embeddings(dict):
    """Block name → (structures × channels) array, aligned with the structures given to :func:`embed`;
    ``seconds`` is the embedding time of each structure (from the cache for those already there) and
    ``computed`` how many were embedded in this call."""

    seconds: np.ndarray
    computed: int


def embed(
    structures: Sequence[Structure],
    material_ids: Sequence[str] | None = None,
    potential: str = 'sevennet-0',
    cache: str | pathlib.Path | None = None,
    batch_size: int = 16,
    device: str = 'cpu',
    save_every: int = 128,
    progress: Callable[[str], None] | None = None,
) -> Embeddings:
    """The :data:`BLOCKS` of every structure with ``potential``, taken from ``cache`` where it holds them
    and computed (in batches of ``batch_size``) otherwise; new ones are written back to ``cache`` (every
    ``save_every`` structures, and at the end). A batch's time is shared among its structures in
    proportion to their atoms. Without ``material_ids`` structures are keyed by their hash alone.

    The last :data:`MEMORY_SIZE` embeddings of each potential are also kept in memory, so the members of
    every ensemble in a process (and every fold of a cross-validation) embed a structure once."""
    material_ids = [''] * len(structures) if material_ids is None else material_ids
    if cache is None and os.environ.get(CACHE_ENV):
        cache = pathlib.Path(os.environ[CACHE_ENV]).expanduser() / f'{potential}.npz'
    if len(structures) != len(material_ids):
        raise ValueError('structures and material ids differ in length')
    embedder = load_embedder(potential, device)
    store = EmbeddingCache(cache, potential, embedder.version)
    keys = [cache_key(m, s) for m, s in zip(material_ids, structures, strict=True)]
    memory = _MEMORY.setdefault(embedder.version, collections.OrderedDict())
    for key in keys:
        remembered = memory.get(key.split('#')[1])
        if key not in store and remembered is not None:
            store.add(key, *remembered)
    missing = list(dict.fromkeys(k for k in keys if k not in store))
    index = {k: i for i, k in enumerate(keys)}
    done_since_save = 0
    # similar sizes together, so padding-free batches stay even; order does not change any result
    missing.sort(key=lambda k: len(structures[index[k]]))
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        batch = [structures[index[k]] for k in chunk]
        began = time.perf_counter()
        blocks = embedder.embed_batch(batch)
        elapsed = time.perf_counter() - began
        atoms = sum(len(s) for s in batch)
        for key, structure, values in zip(chunk, batch, blocks, strict=True):
            store.add(key, values, elapsed * len(structure) / atoms)
        done_since_save += len(chunk)
        if done_since_save >= save_every:
            store.save()
            done_since_save = 0
            if progress:
                progress(f'{potential}: {start + len(chunk)}/{len(missing)} embedded')
    if done_since_save:
        store.save()
    for key in keys:
        memory[key.split('#')[1]] = (store.rows[key], store.seconds[key])
        memory.move_to_end(key.split('#')[1])
    while len(memory) > MEMORY_SIZE:
        memory.popitem(last=False)
    result = Embeddings({block: np.stack([store.rows[k][block] for k in keys]) for block in BLOCKS})
    result.seconds = np.array([store.seconds[k] for k in keys])
    result.computed = len(missing)
    return result


def features(embeddings: dict[str, np.ndarray], pooling: str = 'mean') -> np.ndarray:
    """The feature matrix of a named pooling (:data:`POOLINGS`): its blocks side by side."""
    if pooling not in POOLINGS:
        raise ValueError(f'unknown pooling {pooling!r}; choose from {", ".join(POOLINGS)}')
    return np.concatenate([embeddings[block] for block in POOLINGS[pooling]], axis=1)
