"""Protostructure labels: the coordinate-free input of the Wren model.

A protostructure label (``pymatgen.analysis.prototypes.get_protostructure_label``) is an AFLOW-style
prototype label plus the chemical system, e.g. ``AB_cF8_225_a_b:Cl-Na``: anonymous formula, Pearson
symbol, space group, then per element (alphabetical, as in the chemical system) the Wyckoff positions it
occupies, a count prefix meaning several orbits of the same letter. It is all Wren needs, so hypothetical
structures can be screened before any relaxation fixes their coordinates.

The same crystal can be written with different Wyckoff letters when the space group admits several
equivalent choices of origin/axes (NaCl is ``a_b`` or ``b_a`` in Fm-3m). pymatgen canonicalises the label;
:attr:`Protostructure.augmentations` lists every equivalent letter assignment, so a model averaging over
them cannot depend on which setting a label was written in.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import warnings

from pymatgen.analysis.prototypes import get_protostructure_label
from pymatgen.analysis.prototypes._data import (
    WYCKOFF_MULTIPLICITY_DICT,
    WYCKOFF_POSITION_PARAM_DICT,
    WYCKOFF_POSITION_RELAB_DICT,
)
from pymatgen.core import Composition, Element

#: One Wyckoff token of a label: an optional orbit count and a Wyckoff letter (``A`` only in Pmmm).
_TOKEN = re.compile(r'(\d*)([a-zA-Z])')

#: The default symmetry tolerance (Å) of :func:`label`; pymatgen's own default, loose enough for DFT cells.
SYMPREC = 0.1


class ProtostructureError(ValueError):
    """A structure that cannot be labelled, or a label that cannot be parsed."""


@dataclasses.dataclass(frozen=True)
class Site:
    """One Wyckoff orbit: an element on a Wyckoff position with its multiplicity in the conventional cell."""

    element: str
    wyckoff: str
    multiplicity: int


@dataclasses.dataclass(frozen=True)
class Protostructure:
    """A parsed label: space group, one :class:`Site` per orbit, and the equivalent Wyckoff settings."""

    label: str
    spacegroup: int
    pearson: str
    sites: tuple[Site, ...]
    #: Distinct letter assignments (one letter per site, in site order) equivalent to the label's.
    augmentations: tuple[tuple[str, ...], ...]

    @property
    def composition(self) -> Composition:
        """Composition of the conventional cell implied by the Wyckoff multiplicities."""
        counts: dict[str, int] = {}
        for site in self.sites:
            counts[site.element] = counts.get(site.element, 0) + site.multiplicity
        return Composition(counts)


def label(structure, symprec: float = SYMPREC) -> str:
    """The protostructure label of a pymatgen structure (spglib symmetry), checked to be parseable.

    Raises :class:`ProtostructureError` for what pymatgen cannot label (disordered sites, no symmetry
    dataset, Wyckoff multiplicities that do not reproduce the composition).
    """
    if not structure.is_ordered:
        raise ProtostructureError(f'{structure.formula}: disordered (partially occupied) sites have no label')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # pymatgen's own use of a deprecated gcd
            text = get_protostructure_label(
                structure, method='spglib', raise_errors=True, init_symprec=symprec
            )
    except Exception as exc:  # spglib and pymatgen raise ValueError, TypeError, KeyError, AttributeError…
        raise ProtostructureError(
            f'{structure.composition.reduced_formula}: no protostructure label ({exc})'
        ) from exc
    parse(text)
    return text


def labels(structures, symprec: float = SYMPREC) -> list[str]:
    """Labels of several structures; the error names the position of the first that fails."""
    out = []
    for index, structure in enumerate(structures):
        try:
            out.append(label(structure, symprec))
        except ProtostructureError as exc:
            raise ProtostructureError(f'structure {index}: {exc}') from exc
    return out


@functools.lru_cache(maxsize=100_000)
def parse(text: str) -> Protostructure:
    """Parse ``prototype_pearson_spacegroup_wyckoffs…:El1-El2…`` into sites and equivalent settings."""
    try:
        aflow, chemsys = text.split(':')
        _, pearson, spg, *per_element = aflow.split('_')
        spacegroup = int(spg)
    except ValueError:
        raise ProtostructureError(
            f'{text!r} is not a protostructure label (prototype_pearson_spg_…:chemsys)'
        ) from None
    if not 1 <= spacegroup <= 230:
        raise ProtostructureError(f'{text!r}: space group {spacegroup} outside 1–230')
    elements = chemsys.split('-')
    if len(elements) != len(per_element):
        raise ProtostructureError(
            f'{text!r}: {len(elements)} elements in the chemical system but {len(per_element)} Wyckoff groups'
        )
    multiplicities = WYCKOFF_MULTIPLICITY_DICT[str(spacegroup)]
    sites = []
    for element, wyckoffs in zip(elements, per_element, strict=True):
        if not Element.is_valid_symbol(element):
            raise ProtostructureError(f'{text!r}: {element!r} is not an element')
        tokens = _TOKEN.findall(wyckoffs)
        if not tokens or ''.join(count + letter for count, letter in tokens) != wyckoffs:
            raise ProtostructureError(f'{text!r}: cannot read Wyckoff positions {wyckoffs!r} of {element}')
        for count, letter in tokens:
            if letter not in multiplicities:
                raise ProtostructureError(
                    f'{text!r}: no Wyckoff position {letter!r} in space group {spacegroup}'
                )
            sites += [Site(element, letter, multiplicities[letter])] * int(count or 1)
    letters = [site.wyckoff for site in sites]
    augmentations = dict.fromkeys(
        tuple(relabel.get(ord(letter), letter) for letter in letters) for relabel in _relabellings(spacegroup)
    )
    return Protostructure(text, spacegroup, pearson, tuple(sites), tuple(augmentations))


def _relabellings(spacegroup: int) -> list[dict[int, str]]:
    """Letter maps (ord → letter) between equivalent Wyckoff settings, identity first."""
    return WYCKOFF_POSITION_RELAB_DICT[str(spacegroup)]


def free_parameters(spacegroup: int, letter: str) -> int:
    """Number of free coordinates (0–3) of a Wyckoff position."""
    return WYCKOFF_POSITION_PARAM_DICT[str(spacegroup)][letter]


def general_multiplicity(spacegroup: int) -> int:
    """Multiplicity of the general position, i.e. the order of the group in the conventional cell."""
    return max(WYCKOFF_MULTIPLICITY_DICT[str(spacegroup)].values())
