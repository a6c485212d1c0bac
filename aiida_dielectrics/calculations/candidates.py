"""Provenance around candidate generation: seeds and parameters in, candidate structures out.

The pure work is :mod:`aiida_dielectrics.science.candidates`; here it is wrapped in a calcfunction so that every
generated ``StructureData`` links back to its seeds and to the parameters that made it, plus helpers
that turn user files, a group or a reference data set into inputs for a campaign.
"""

from __future__ import annotations

import re

from aiida.engine import calcfunction
from aiida.orm import Dict, Group, QueryBuilder, StructureData

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.science import candidates

#: Parameters of :func:`generate_candidates` and their defaults.
DEFAULT_PARAMETERS = {
    'threshold': candidates.DEFAULT_THRESHOLD,
    'max_candidates': 100,
    'exclude_formulas': [],
}


def check_parameters(parameters: dict) -> str | None:
    """Why ``parameters`` are unusable, or ``None`` if they are fine."""
    unknown = sorted(set(parameters) - set(DEFAULT_PARAMETERS))
    if unknown:
        return f'unknown parameters {", ".join(unknown)}'
    threshold = parameters.get('threshold', DEFAULT_PARAMETERS['threshold'])
    if not isinstance(threshold, int | float) or not 0 < threshold < 1:
        return f'threshold must be in (0, 1), got {threshold!r}'
    count = parameters.get('max_candidates', DEFAULT_PARAMETERS['max_candidates'])
    if not isinstance(count, int) or count < 1:
        return f'max_candidates must be a positive integer, got {count!r}'
    return None


def validate_parameters(parameters: Dict, _) -> str | None:
    """Port validator of ``generate_candidates.parameters``: bad parameters are refused at submission."""
    problem = check_parameters({**DEFAULT_PARAMETERS, **parameters.get_dict()})
    return f'invalid parameters: {problem}' if problem else None


@calcfunction
def generate_candidates(parameters: Dict, **seeds: StructureData) -> dict:
    """Substitution candidates of the ``seeds`` (see :func:`aiida_dielectrics.science.candidates.generate_substitutions`).

    Outputs ``structures.candidate_<n>`` (most probable first, at most ``max_candidates`` so that the
    node count stays bounded) and ``report`` with each candidate's formula, protostructure, probability,
    seed and substitutions, and the rejection counts.
    """
    settings = {**DEFAULT_PARAMETERS, **parameters.get_dict()}
    found, rejected = candidates.generate_substitutions(
        {label: node.get_pymatgen_structure() for label, node in seeds.items()},
        threshold=settings['threshold'],
        max_candidates=settings['max_candidates'],
        exclude_formulas=settings['exclude_formulas'],
    )
    structures, report = {}, {}
    for index, candidate in enumerate(found):
        key = f'candidate_{index:04d}'
        structures[key] = StructureData(pymatgen=candidate.structure)
        report[key] = {
            'formula': candidate.formula,
            'protostructure': candidate.protostructure,
            'probability': candidate.probability,
            'seed': candidate.source,
            'substitutions': [list(pair) for pair in candidate.substitutions],
        }
    return {'structures': structures, 'report': Dict({'candidates': report, 'rejected': rejected})}


generate_candidates.spec().inputs['parameters'].validator = validate_parameters


def link_label(text: str) -> str:
    """A valid link label from a file name or id (``SrTiO3.cif`` → ``SrTiO3_cif``)."""
    label = re.sub(r'\W+', '_', text).strip('_')
    return label if label and not label[0].isdigit() else f's_{label}'


def structures_from_files(paths) -> dict[str, StructureData]:
    """Unstored ``StructureData`` keyed by a link label of each file's name."""
    return {
        link_label(path.rsplit('/', 1)[-1]): StructureData(pymatgen=structure)
        for path, structure in candidates.read_structure_files(paths).items()
    }


def structures_from_group(label: str) -> dict[str, StructureData]:
    """The ``StructureData`` nodes of a group, keyed ``s<pk>``; an unknown group raises ``ValueError``."""
    if not QueryBuilder().append(Group, filters={'label': label}).count():
        raise ValueError(f'no group with label {label!r}')
    query = QueryBuilder().append(Group, filters={'label': label}, tag='group')
    query.append(StructureData, with_group='group')
    return {f's{node.pk}': node for node in query.all(flat=True)}


def user_candidates(
    structures: dict[str, StructureData], exclude_formulas=(), require_charge_balance: bool = True
) -> tuple[dict[str, dict], dict[str, int]]:
    """The user structures that pass the candidate filters, ``{key: {formula, protostructure}}``, and rejections."""
    found, rejected = candidates.filter_structures(
        {key: node.get_pymatgen_structure() for key, node in structures.items()},
        exclude_formulas,
        require_charge_balance,
    )
    kept = {item.source: {'formula': item.formula, 'protostructure': item.protostructure} for item in found}
    return kept, rejected


def reference_formulas(group: str | None = None) -> list[str]:
    """Distinct formulas of the stored dielectric results (of one group), e.g. to exclude known materials."""
    query = QueryBuilder()
    if group is not None:
        query.append(Group, filters={'label': group}, tag='group')
    query.append(
        DielectricData, project='attributes.formula', **({'with_group': 'group'} if group is not None else {})
    )
    return sorted(set(query.all(flat=True)))
