"""Potential energies on the Materials Project scale: MP2020 compatibility corrections (pure, no AiiDA).

SevenNet-0 and CHGNet are trained on MPtrj, the raw (uncorrected) VASP energies of MP's relaxations, with
GGA+U for transition-metal oxides and fluorides and GGA elsewhere. Mixing their energies across such a
chemical system (Fe metal and Fe2O3, say), or comparing them with MP entries, needs MP's corrections as
Matbench Discovery applies them to these potentials: the energy goes into a ``ComputedStructureEntry``
with the parameters MP's own run of that structure would have had (``run_type`` GGA or GGA+U, the
``hubbards`` of ``MPRelaxSet``, its POTCAR symbols), and ``MaterialsProject2020Compatibility`` adds the
anion (oxide, sulfide, halide…) and GGA/GGA+U mixing corrections. Matbench Discovery copies the
parameters from each structure's WBM DFT entry; a new candidate has none, so they come from
``MPRelaxSet``, the input set MP used (and the one the compatibility scheme checks against).
"""

from __future__ import annotations

import math
import warnings

from pymatgen.core import Composition, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

#: The correction scheme, named as pymatgen names it (recorded with every corrected energy).
SCHEME = 'MP2020'

_COMPATIBILITY = None


def compatibility():
    """One ``MaterialsProject2020Compatibility`` (its YAML configuration is read once)."""
    global _COMPATIBILITY
    if _COMPATIBILITY is None:
        from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

        _COMPATIBILITY = MaterialsProject2020Compatibility()
    return _COMPATIBILITY


def mp_parameters(composition: Composition | str) -> dict:
    """The ``ComputedEntry.parameters`` of MP's GGA(+U) relaxation of ``composition`` (``MPRelaxSet``).

    U is set, as ``MPRelaxSet`` sets it, on the elements listed for the most electronegative element
    (O or F: Co, Cr, Fe, Mn, Mo, Ni, V, W); the POTCAR symbols are ``MPRelaxSet``'s (PBE, no hash).
    """
    from pymatgen.io.vasp.sets import MPRelaxSet

    composition = Composition(composition)
    config = MPRelaxSet.CONFIG
    most_electronegative = max(composition.elements, key=lambda element: element.X).symbol
    u_values = config['INCAR']['LDAUU'].get(most_electronegative, {})
    hubbards = {
        element.symbol: float(u_values[element.symbol])
        for element in composition.elements
        if u_values.get(element.symbol, 0)
    }
    functional = config.get('POTCAR_FUNCTIONAL', 'PBE')
    missing = sorted(
        element.symbol for element in composition.elements if element.symbol not in config['POTCAR']
    )
    if missing:
        raise ValueError(f'MP has no POTCAR for {", ".join(missing)}')
    return {
        'run_type': 'GGA+U' if hubbards else 'GGA',
        'is_hubbard': bool(hubbards),
        'hubbards': hubbards,
        'potcar_spec': [
            {'titel': f'PAW_{functional} {config["POTCAR"][element.symbol]}', 'hash': None}
            for element in sorted(composition.elements)
        ],
    }


def mp_entry(structure: Structure, energy: float, entry_id: str | None = None) -> ComputedStructureEntry:
    """An uncorrected entry for ``structure`` with total ``energy`` (eV) and MP's run parameters."""
    return ComputedStructureEntry(
        structure, float(energy), parameters=mp_parameters(structure.composition), entry_id=entry_id
    )


def mp_corrected_energy(structure: Structure, energy_per_atom: float) -> tuple[float, str | None]:
    """``(energy per atom on the MP2020 scale, None)``, or ``(nan, reason)`` where the scheme rejects it.

    The correction depends on the structure (oxide/peroxide/superoxide and sulfide/polysulfide types),
    so it takes the relaxed structure the energy belongs to. Elements get no correction.
    """
    if energy_per_atom is None or not math.isfinite(energy_per_atom):
        return math.nan, 'no energy'
    with warnings.catch_warnings():
        # "Failed to guess oxidation states": the scheme then corrects only the most electronegative atom.
        warnings.filterwarnings('ignore', message='Failed to guess oxidation states')
        try:
            entry = mp_entry(structure, energy_per_atom * len(structure))
            adjustments = compatibility().get_adjustments(entry)
        except Exception as exception:  # CompatibilityError, or ValueError (no MP POTCAR)
            return math.nan, f'{SCHEME} correction not applicable: {str(exception).splitlines()[0]}'
    entry.energy_adjustments = adjustments
    return entry.energy / len(structure), None
