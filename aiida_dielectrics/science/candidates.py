"""Candidate crystals for a screening campaign: element substitution of seeds, filters, de-duplication.

Pure pymatgen: structures in, :class:`Candidate` objects out, no AiiDA profile needed (the calcfunction
that records the provenance is :func:`aiida_dielectrics.calculations.candidates.generate_candidates`).

Substitution follows Hautier et al., Inorg. Chem. 50, 656 (2011), with pymatgen's ICSD-derived
probability table: each seed is decorated with its most likely oxidation states, and every assignment of
new species to the seed's species whose probability ∏ P(new_i | seed_i) exceeds ``threshold`` becomes a
candidate, provided it is charge-balanced, keeps the species distinct and changes at least one of them —
the same rule as pymatgen's ``Substitutor.pred_from_structures``, enumerated with pruning so that a
ternary seed takes ~30 ms instead of the ~20 s of ``SubstitutionPredictor.list_prediction``.
The substituted lattice is rescaled with pymatgen's ionic-radius volume predictor (``RLSVolumePredictor``)
so that the ML models see a plausible density; DFPT relaxes it later anyway.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import math
import pathlib
import warnings
from collections.abc import Iterable, Iterator

from pymatgen.core import Composition, Species, Structure

#: Default lower bound on the substitution probability (pymatgen's default).
DEFAULT_THRESHOLD = 1e-3


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One candidate crystal (no oxidation states) with the labels the screening needs."""

    structure: Structure
    formula: str
    protostructure: str | None
    source: str
    probability: float | None = None
    substitutions: tuple[tuple[str, str], ...] = ()


def reduced_formula(composition) -> str:
    """Reduced formula without oxidation states, in pymatgen's convention (as the stored data use)."""
    composition = Composition(composition)
    return composition.element_composition.reduced_formula


def protostructure_label(structure: Structure) -> str | None:
    """Wyckoff protostructure label (``AB_cF8_225_a_b:Mg-O``); ``None`` if symmetry detection fails."""
    from pymatgen.analysis.prototypes import get_protostructure_label

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        try:
            return get_protostructure_label(structure, method='spglib', raise_errors=True)
        except Exception:  # spglib failures come as assorted exception types
            return None


@dataclasses.dataclass(frozen=True)
class SeedSymmetry:
    """What a protostructure label needs from a seed's symmetry analysis, computed once per seed.

    A substitution maps the seed's species one-to-one onto distinct new species and rescales the
    lattice isotropically, so space group, Pearson symbol and Wyckoff orbits stay those of the seed: the
    candidate's label follows from relabelling the orbits (:meth:`label`) instead of a new spglib
    analysis (~15 ms a candidate, most of the generation time otherwise). Both agree on 8,968 of 8,975
    candidates of 300 Petousis seeds; the 7 others are rutile-type seeds whose small distortion, stretched
    by a much larger volume, exceeds spglib's 0.1 Å tolerance in the candidate's own analysis.
    """

    spacegroup: int
    pearson: str
    orbits: tuple[tuple[str, str], ...]  # (species string, Wyckoff letter) per orbit

    @classmethod
    def of(cls, structure: Structure) -> SeedSymmetry | None:
        """The seed's symmetry as ``get_protostructure_label(method='spglib')`` finds it; ``None`` on failure."""
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        try:
            analyzer = SpacegroupAnalyzer(structure, symprec=0.1, angle_tolerance=5)
            symmetrized = analyzer.get_symmetrized_structure()
            orbits = tuple(
                (sites[0].species_string, letter.strip('0123456789'))
                for sites, letter in zip(
                    symmetrized.equivalent_sites, symmetrized.wyckoff_symbols, strict=True
                )
            )
            symmetry = cls(analyzer.get_space_group_number(), analyzer.get_pearson_symbol(), orbits)
        except Exception:  # spglib failures come as assorted exception types
            return None
        # pymatgen retries some structures with a refined cell; those keep the per-candidate analysis.
        identity = {species: Species.from_str(species).symbol for species, _ in orbits}
        plain = structure.copy()
        plain.remove_oxidation_states()
        if symmetry.label(identity, plain.composition) != protostructure_label(plain):
            return None
        return symmetry

    def label(self, mapping: dict[str, str], composition: Composition) -> str:
        """The protostructure label of the seed with species ``mapping`` (species string → element)."""
        from pymatgen.analysis.prototypes import (
            canonicalize_element_wyckoffs,
            get_prototype_formula_from_composition,
        )

        orbits = sorted((mapping[species], letter) for species, letter in self.orbits)
        wyckoffs = '_'.join(
            ''.join(
                f'{len(list(same))}{letter}' for letter, same in itertools.groupby(group, key=lambda o: o[1])
            )
            for _, group in itertools.groupby(orbits, key=lambda orbit: orbit[0])
        )
        wyckoffs = canonicalize_element_wyckoffs(wyckoffs, self.spacegroup)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # pymatgen's own use of a deprecated gcd
            prototype = get_prototype_formula_from_composition(composition)
        return f'{prototype}_{self.pearson}_{self.spacegroup}_{wyckoffs}:{composition.chemical_system}'


def charge_balanced(composition) -> bool:
    """Whether some assignment of common oxidation states makes the composition neutral."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return bool(Composition(composition).oxi_state_guesses(max_sites=-1))


def with_oxidation_states(structure: Structure) -> Structure | None:
    """A copy decorated with the most likely oxidation states (kept if already there); ``None`` if none fit."""
    if all(isinstance(species, Species) and species.oxi_state is not None for species in structure.species):
        return structure.copy()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        guesses = structure.composition.element_composition.oxi_state_guesses(max_sites=-1)
    if not guesses:
        return None
    decorated = structure.copy()
    decorated.remove_oxidation_states()
    decorated.add_oxidation_state_by_element(guesses[0])
    return decorated


@functools.lru_cache(maxsize=1)
def substitution_table():
    """pymatgen's ICSD-derived substitution probabilities (loading takes a few seconds, so once)."""
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    return SubstitutionProbability()


def substitution_options(seed: Species, threshold: float) -> list[tuple[float, Species]]:
    """``(P(new | seed), new)`` above ``threshold``, most likely first (seed itself included)."""
    table = substitution_table()
    options = [(table.cond_prob(new, seed), new) for new in table.species]
    return sorted(
        ((p, new) for p, new in options if p > threshold), key=lambda item: (-item[0], str(item[1]))
    )


def substitutions(
    seed: Structure, threshold: float = DEFAULT_THRESHOLD
) -> Iterator[tuple[float, dict[Species, Species]]]:
    """``(probability, {seed species: new species})`` for an oxidation-state-decorated seed.

    Only charge-balanced assignments of distinct species that change at least one species are yielded;
    species outside the probability table make the seed unusable (nothing is yielded).
    """
    table = substitution_table()
    amounts = seed.composition
    species = sorted(amounts, key=str)
    if any(item not in table.species for item in species):
        return
    options = [substitution_options(item, threshold) for item in species]
    if not all(options):
        return
    # Best achievable product of the remaining levels, to prune a branch as soon as it cannot pass.
    best_rest = [math.prod(level[0][0] for level in options[index:]) for index in range(len(options) + 1)]

    def recurse(level: int, probability: float, chosen: list[Species], charge: float):
        if level == len(species):
            if abs(charge) < 1e-8 and chosen != species and len(set(chosen)) == len(chosen):
                yield probability, dict(zip(species, chosen, strict=True))
            return
        for p, new in options[level]:
            if probability * p * best_rest[level + 1] <= threshold:
                break
            yield from recurse(
                level + 1, probability * p, [*chosen, new], charge + new.oxi_state * amounts[species[level]]
            )

    yield from recurse(0, 1.0, [], 0.0)


def substituted_structure(seed: Structure, mapping: dict[Species, Species]) -> Structure:
    """The seed with species replaced, its volume rescaled by ionic radii, oxidation states removed."""
    from pymatgen.analysis.structure_prediction.volume_predictor import RLSVolumePredictor

    structure = seed.copy()
    structure.replace_species(mapping)
    predictor = RLSVolumePredictor(check_isostructural=False, radii_type='ionic', use_bv=False)
    # An ion without a tabulated radius keeps the seed's lattice (DFPT relaxes it); 'no default ionic
    # radius, using low-spin data' warnings are expected for transition metals.
    with warnings.catch_warnings(), contextlib.suppress(ValueError, KeyError, TypeError):
        warnings.simplefilter('ignore', UserWarning)
        structure = predictor.get_predicted_structure(structure, seed)
    structure.remove_oxidation_states()
    return structure


class CandidateFilter:
    """De-duplication on (protostructure, reduced formula) and exclusion of known compositions.

    Keeps counts of why structures were rejected, so that a campaign can report them.
    """

    def __init__(self, exclude_formulas: Iterable[str] = (), require_charge_balance: bool = True):
        self.excluded = {reduced_formula(formula) for formula in exclude_formulas}
        self.require_charge_balance = require_charge_balance
        self.seen: set[tuple[str | None, str]] = set()
        self.rejected: collections.Counter = collections.Counter()

    def is_new(self, formula: str, label: str | None) -> bool:
        """Whether (label, formula) is neither excluded nor seen before; counts the reason if not."""
        if formula in self.excluded:
            self.rejected['in_reference'] += 1
            return False
        if (label, formula) in self.seen:
            self.rejected['duplicate'] += 1
            return False
        self.seen.add((label, formula))
        return True

    def accept(self, structure: Structure, source: str) -> Candidate | None:
        """A :class:`Candidate` for a structure that passes, else ``None`` (and the reason is counted)."""
        formula = reduced_formula(structure.composition)
        if (
            self.require_charge_balance
            and formula not in self.excluded
            and not charge_balanced(structure.composition)
        ):
            self.rejected['not_charge_balanced'] += 1
            return None
        label = protostructure_label(structure)
        if not self.is_new(formula, label):
            return None
        return Candidate(structure=structure, formula=formula, protostructure=label, source=source)


def generate_substitutions(
    seeds: dict[str, Structure],
    threshold: float = DEFAULT_THRESHOLD,
    max_candidates: int | None = None,
    exclude_formulas: Iterable[str] = (),
) -> tuple[list[Candidate], dict[str, int]]:
    """Substitution candidates from ``{seed id: structure}``, most probable first, and rejection counts.

    Substitutions of all seeds are ranked together by probability and turned into structures in that
    order until ``max_candidates`` pass (charge balance holds by construction); a substitution is
    labelled and checked for duplicates before its structure is built. Rejection reasons:
    ``no_oxidation_states`` (seed), ``in_reference``, ``duplicate``.
    """
    check = CandidateFilter(exclude_formulas)
    proposals, symmetries = [], {}
    for seed_id, structure in seeds.items():
        decorated = with_oxidation_states(structure)
        if decorated is None:
            check.rejected['no_oxidation_states'] += 1
            continue
        symmetries[seed_id] = SeedSymmetry.of(decorated)
        for probability, mapping in substitutions(decorated, threshold):
            proposals.append((probability, seed_id, decorated, mapping))
    proposals.sort(key=lambda item: (-item[0], item[1], sorted(map(str, item[3].values()))))
    candidates = []
    for probability, seed_id, decorated, mapping in proposals:
        if max_candidates is not None and len(candidates) >= max_candidates:
            break
        elements = {str(old): new.symbol for old, new in mapping.items()}
        composition = Composition(
            {elements[str(species)]: amount for species, amount in decorated.composition.items()}
        )
        formula = reduced_formula(composition)
        symmetry = symmetries[seed_id]
        if symmetry is not None:
            label = symmetry.label(elements, composition)
            if not check.is_new(formula, label):
                continue
            structure = substituted_structure(decorated, mapping)
        else:
            structure = substituted_structure(decorated, mapping)
            label = protostructure_label(structure)
            if not check.is_new(formula, label):
                continue
        changed = tuple((str(old), str(new)) for old, new in mapping.items() if old != new)
        candidates.append(
            Candidate(
                structure, formula, label, seed_id, probability=float(probability), substitutions=changed
            )
        )
    return candidates, dict(check.rejected)


def filter_structures(
    structures: dict[str, Structure],
    exclude_formulas: Iterable[str] = (),
    require_charge_balance: bool = True,
) -> tuple[list[Candidate], dict[str, int]]:
    """User-supplied ``{id: structure}`` as candidates: charge balance, exclusion, de-duplication."""
    check = CandidateFilter(exclude_formulas, require_charge_balance)
    candidates = []
    for source, structure in structures.items():
        plain = structure.copy()
        plain.remove_oxidation_states()
        candidate = check.accept(plain, source=source)
        if candidate is not None:
            candidates.append(candidate)
    return candidates, dict(check.rejected)


def read_structure_files(paths: Iterable[str | pathlib.Path]) -> dict[str, Structure]:
    """``{file name: structure}`` from CIF/POSCAR/… files; an unreadable file raises ``ValueError``."""
    structures = {}
    for path in map(pathlib.Path, paths):
        try:
            structures[str(path)] = Structure.from_file(path)
        except Exception as exception:  # pymatgen raises many types for unreadable files
            raise ValueError(f'cannot read a structure from {path}: {exception}') from exception
    return structures
