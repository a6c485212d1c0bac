"""Reference states for the offline default hull: element structures to relax, known structures to keep.

The hull's corners are the elements' ground states as the potential sees them, so each element gets
its lowest relaxed energy over a few trial structures (:func:`element_trials`):

- ASE's reference crystal (``ase.build.bulk``, the experimental ground state) where ASE can build it;
- where it cannot (no atomic basis in ``ase.data.reference_states``) or where it is not the 0 K ground
  state, the ground-state crystal from the literature (:data:`CRYSTALS`): α-B, α-Ga, α-Mn, black P,
  trigonal Se and Te, sulfur as Se-type helical chains (α-S8, 128 atoms, is not built), α-Sn, and the
  halogens' Cmca molecular crystal;
- the molecular elements (H, N, O, F and the halogens) also as a relaxed diatomic molecule alone in a
  10 Å box (positions only) and, for H, N, O, F, as a Pa-3 molecular crystal (α-N2 type), relaxed in
  full;
- for an element with none of these (Pm, Pu…), simple fcc, bcc and sc cells (one atom each).

The lowest of these is an upper bound on the potential's true ground state; ``benchmarks/bench_hull.py``
compares each with MP's own elemental reference energy. Known structures (e.g. the imported DFPT data)
enter the hull only if their elements lie in a candidate's chemical system.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping

from pymatgen.core import Composition, Element, Lattice, Structure

#: Diatomic molecules: bond length (Å) to start from (ASE's ``reference_states`` for H, N, O, F).
MOLECULES = {'H': 0.74, 'N': 1.10, 'O': 1.21, 'F': 1.42, 'Cl': 1.99, 'Br': 2.28, 'I': 2.67}
#: The gas-phase molecules also tried as a Pa-3 crystal (α-N2: molecules on fcc sites along ⟨111⟩).
MOLECULAR_CRYSTALS = {'H': 4.5, 'N': 5.66, 'O': 5.5, 'F': 5.5}  # cubic a (Å) to start from
#: Edge (Å) of the box around a lone molecule: images ≥ 7 Å apart, beyond both potentials' 5 Å cutoff.
BOX = 10.0


def _halogen_crystal(a: float, b: float, c: float) -> tuple:
    """Cmca (64) with molecules in the bc plane, I2's fractional coordinates (0, 0.1543, 0.1174)."""
    return 64, Lattice.orthorhombic(a, b, c), [[0, 0.1543, 0.1174]]


#: Ground-state crystals ASE cannot build (or, for Sn, builds as β-Sn): (space group, lattice, sites).
CRYSTALS: dict[str, tuple] = {
    'B': (
        166,
        Lattice.hexagonal(4.908, 12.567),
        [[0.11886, -0.11886, 0.89133], [0.19686, -0.19686, 0.02432]],
    ),
    'Ga': (64, Lattice.orthorhombic(4.5192, 7.6586, 4.5258), [[0, 0.1549, 0.0810]]),
    'Mn': (
        217,
        Lattice.cubic(8.911),
        [[0, 0, 0], [0.3179, 0.3179, 0.3179], [0.3571, 0.3571, 0.0347], [0.0896, 0.0896, 0.2819]],
    ),
    'P': (64, Lattice.orthorhombic(3.3136, 10.478, 4.3763), [[0, 0.10168, 0.08056]]),
    'S': (152, Lattice.hexagonal(3.78, 4.29), [[0.2254, 0, 1 / 3]]),
    'Se': (152, Lattice.hexagonal(4.366, 4.954), [[0.2254, 0, 1 / 3]]),
    'Te': (152, Lattice.hexagonal(4.457, 5.929), [[0.2636, 0, 1 / 3]]),
    'Sn': (227, Lattice.cubic(6.489), [[0, 0, 0]]),
    'Cl': _halogen_crystal(6.24, 4.48, 8.26),
    'Br': _halogen_crystal(6.67, 4.48, 8.72),
    'I': _halogen_crystal(7.18, 4.71, 9.81),
}


def element_trials(symbol: str) -> dict[str, tuple[Structure, bool]]:
    """Trial structures for element ``symbol``: ``{name: (structure, fix_cell)}``."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    Element(symbol)  # raises for an unknown symbol
    trials: dict[str, tuple[Structure, bool]] = {}
    # No crystal reference state in ASE for molecules, or a structure without its basis: skipped.
    with contextlib.suppress(ValueError, RuntimeError, KeyError, NotImplementedError):
        trials['ase'] = (AseAtomsAdaptor.get_structure(bulk(symbol)), False)
    if symbol in CRYSTALS:
        number, lattice, sites = CRYSTALS[symbol]
        crystal = Structure.from_spacegroup(number, lattice, [symbol] * len(sites), sites)
        trials['crystal'] = (crystal.get_primitive_structure(), False)
    if symbol in MOLECULES:
        bond = MOLECULES[symbol]
        centre = BOX / 2
        molecule = Structure(
            Lattice.cubic(BOX),
            [symbol, symbol],
            [[centre, centre, centre - bond / 2], [centre, centre, centre + bond / 2]],
            coords_are_cartesian=True,
        )
        trials['molecule'] = (molecule, True)
    if symbol in MOLECULAR_CRYSTALS:
        a = MOLECULAR_CRYSTALS[symbol]
        x = MOLECULES[symbol] / (2 * math.sqrt(3) * a)  # 8c (x, x, x): bond 2√3·x·a along ⟨111⟩
        trials['molecular-crystal'] = (
            Structure.from_spacegroup(205, Lattice.cubic(a), [symbol], [[x, x, x]]),
            False,
        )
    if not trials.keys() & {'ase', 'crystal', 'molecular-crystal'}:  # no known crystal: simple ones
        distance = 2 * (Element(symbol).atomic_radius or 1.5)  # nearest-neighbour distance to start from
        for name, factor, sites in (
            ('fcc', math.sqrt(2), [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
            ('bcc', 2 / math.sqrt(3), [[0, 0, 0], [0.5, 0.5, 0.5]]),
            ('sc', 1.0, [[0, 0, 0]]),
        ):
            cell = Structure(Lattice.cubic(distance * factor), [symbol] * len(sites), sites)
            trials[name] = (cell.get_primitive_structure(), False)
    return trials


def lowest(energies: Mapping[str, float]) -> str | None:
    """The name with the lowest finite energy (``None`` if there is none)."""
    finite = {name: value for name, value in energies.items() if value is not None and math.isfinite(value)}
    return min(finite, key=finite.get) if finite else None


def elements_of(compositions: Iterable) -> list[str]:
    """The element symbols of ``compositions`` (structures, compositions or formulas), by atomic number."""
    symbols = set()
    for item in compositions:
        composition = Composition(getattr(item, 'composition', item))
        symbols.update(element.symbol for element in composition.elements)
    return sorted(symbols, key=lambda symbol: Element(symbol).Z)


def hull_rows(elements: Mapping[str, dict], known: Mapping[str, dict]) -> dict:
    """The default hull's entries from relaxation records (:func:`.relax.record`) of element trials and
    known structures, by key: ``{potential, entries: [{entry_id, composition, energy}], elements:
    {symbol: key}, excluded: {key: reason}}``, total energies (eV) on the MP2020 scale.

    Each element's reference is its lowest converged trial (elements get no MP2020 correction); a known
    structure that did not converge or has no MP2020 energy is left out, with its reason.
    """
    potentials = {record['potential'] for record in [*elements.values(), *known.values()]}
    if len(potentials) > 1:
        raise ValueError(f'relaxations with different potentials: {", ".join(sorted(potentials))}')
    best: dict[str, tuple[str, float]] = {}
    for key, record in elements.items():
        (symbol,) = record['composition']
        usable = record['reason'] is None and record['energy'] is not None
        if usable and (symbol not in best or record['energy'] < best[symbol][1]):
            best[symbol] = (key, record['energy'])
    rows = [
        {'entry_id': key, 'composition': {symbol: 1.0}, 'energy': energy}
        for symbol, (key, energy) in sorted(best.items())
    ]
    excluded = {}
    for key, record in known.items():
        if record['reason'] is not None or record['energy_mp'] is None:
            excluded[key] = record['reason'] or record['mp_reason']
            continue
        atoms = sum(record['composition'].values())
        rows.append(
            {'entry_id': key, 'composition': record['composition'], 'energy': record['energy_mp'] * atoms}
        )
    return {
        'potential': potentials.pop() if potentials else None,
        'entries': rows,
        'elements': {symbol: key for symbol, (key, _) in sorted(best.items())},
        'excluded': excluded,
    }
