"""Crystal graphs for matgl models: built once per structure and (cutoff, element list), batched with positions.

Inference builds each graph once and shares it between every model with the same cutoff and element list;
training also reuses it across members and epochs (:func:`shared_builder` memoises by structure object).
"""

from __future__ import annotations

import weakref

import numpy as np
import torch


class GraphBuilder:
    """Crystal graphs for one (cutoff, element list), refusing structures the models cannot take.

    With ``memo``, a graph is kept per structure object (keyed on identity with a weak reference, so a
    recycled id never returns a stale graph) for callers that see the same structures again.
    """

    def __init__(self, cutoff: float, element_types: tuple[str, ...], memo: bool = False):
        from matgl.ext.pymatgen import Structure2Graph

        self.cutoff = cutoff
        self.elements = set(element_types)
        self.converter = Structure2Graph(element_types=tuple(element_types), cutoff=cutoff)
        self._memo: dict[int, tuple] | None = {} if memo else None

    def build(self, structure):
        """``(graph, lattice, state)`` or raise ``ValueError`` with the reason it cannot be predicted."""
        if self._memo is not None:
            entry = self._memo.get(id(structure))
            if entry is not None and entry[0]() is structure:
                return entry[1]
        if not structure.is_ordered:
            raise ValueError('disordered structure (partial occupancies) is not supported')
        unsupported = sorted({site.specie.symbol for site in structure} - self.elements)
        if unsupported:
            raise ValueError(f'unsupported element(s): {", ".join(unsupported)}')
        graph, lattice, state = self.converter.get_graph(structure)
        degree = torch.bincount(graph.edge_index[0], minlength=len(structure))
        if bool((degree == 0).any()):
            isolated = structure[int(torch.nonzero(degree == 0)[0])].specie.symbol
            raise ValueError(f'isolated atom ({isolated}): no neighbour within {self.cutoff:g} Å')
        value = (graph, torch.as_tensor(lattice, dtype=torch.float32), state)
        if self._memo is not None:
            self._memo[id(structure)] = (weakref.ref(structure), value)
        return value


_SHARED: dict[tuple, GraphBuilder] = {}


def shared_builder(cutoff: float, element_types) -> GraphBuilder:
    """The memoising builder of this process for (cutoff, element list), shared by all members."""
    key = (float(cutoff), tuple(element_types))
    if key not in _SHARED:
        _SHARED[key] = GraphBuilder(*key, memo=True)
    return _SHARED[key]


def collate(samples: list):
    """One batched graph with Cartesian positions and periodic image shifts, and the stacked states."""
    from torch_geometric.data import Batch

    graph = Batch.from_data_list([sample[0] for sample in samples])
    lattices = torch.cat([torch.as_tensor(sample[1]).reshape(1, 3, 3) for sample in samples])
    node_lattice = lattices[graph.batch]
    graph.pos = torch.bmm(graph.frac_coords.unsqueeze(1), node_lattice).squeeze(1)
    edge_lattice = node_lattice[graph.edge_index[0]]
    graph.pbc_offshift = torch.bmm(graph.pbc_offset.unsqueeze(1), edge_lattice).squeeze(1)
    states = torch.as_tensor(np.stack([sample[2] for sample in samples]))
    return graph, states
