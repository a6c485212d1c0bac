"""Γ-point lattice dielectric response from Born charges and force constants (numpy only, no AiiDA).

Everything inside is in Hartree atomic units (e = ħ = m_e = 1; lengths in bohr, energies in Ha), in
which the ionic permittivity is the Gaussian-units expression (Gonze & Lee, PRB 55, 10355 (1997))

    ε_ion,αβ = (4π/Ω) Σ_m S_m,αβ / ω_m²,    S_m,αβ = p_m,α p_m,β,    p_m,α = Σ_κβ' Z*_κ,αβ' U_m(κβ'),

over the optical modes m, with U_m = e_m/√M_κ the mass-scaled eigenvector of the dynamical matrix.
Inputs use the units Quantum ESPRESSO writes (force constants in Ry/bohr², masses in amu, Ω in bohr³)
and frequencies come out in cm⁻¹.

Born charges are ``Z[κ, α, β] = ∂F_κβ/∂E_α = Ω ∂P_α/∂u_κβ`` (α: field, β: displacement), as ph.x
writes them ("Effective Charges E-U").
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

#: Unit conversions (CODATA values as used by Quantum ESPRESSO).
AMU_TO_ME = 1822.888486209
RY_TO_HA = 0.5
HA_TO_CM1 = 219474.6313705
BOHR_TO_ANG = 0.529177210903

#: An optical mode counts as imaginary (dynamical instability) when ω² < 0 and √(−ω²) exceeds this, in cm⁻¹.
#: 10 cm⁻¹ is above the numerical noise of a converged Γ calculation once the acoustic sum rule is
#: imposed (residual acoustic frequencies of a few cm⁻¹) and far below any physical soft mode that
#: matters for the static permittivity.
IMAGINARY_TOLERANCE_CM1 = 10.0


@dataclasses.dataclass
class GammaDielectric:
    """The lattice dielectric response at Γ and what it was computed from (see module docstring for units)."""

    epsilon_ionic: np.ndarray  #: 3×3, dimensionless
    frequencies: np.ndarray  #: 3N, cm⁻¹, ascending; imaginary modes as negative numbers
    acoustic: np.ndarray  #: 3N booleans, True for the three acoustic modes
    oscillator_strengths: np.ndarray  #: 3N×3×3, atomic units (e²/m_e)
    born_charges: np.ndarray  #: N×3×3 after imposing charge neutrality
    #: largest absolute element of ``Σ_κ Z*_κ`` before the correction, e
    born_charge_neutrality_violation: float
    dynamically_stable: bool  #: no optical mode imaginary beyond ``IMAGINARY_TOLERANCE_CM1``

    @property
    def optical_frequencies(self) -> np.ndarray:
        return self.frequencies[~self.acoustic]


def impose_charge_neutrality(born_charges) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the mean of Σ_κ Z*_κ from every atom (QE's 'simple' rule); return ``(corrected, Σ_κ Z*_κ)``."""
    charges = np.asarray(born_charges, dtype=float)
    total = charges.sum(axis=0)
    return charges - total / len(charges), total


def impose_acoustic_sum_rule(force_constants) -> np.ndarray:
    """Force constants (3N×3N) that leave rigid translations at zero energy, kept symmetric.

    First QE's 'simple' rule (each on-site block absorbs the row sum), then the symmetric projection
    P Φ P with P removing uniform translations: that second step changes nothing when the first already
    gives a symmetric matrix (the usual case) and otherwise restores symmetry without breaking the rule.
    """
    phi = np.array(force_constants, dtype=float)
    num_atoms = phi.shape[0] // 3
    blocks = phi.reshape(num_atoms, 3, num_atoms, 3)
    row_sums = blocks.sum(axis=2)  # (κ, α, β) = Σ_κ' Φ(κα, κ'β)
    for atom in range(num_atoms):
        blocks[atom, :, atom, :] -= row_sums[atom]
    phi = blocks.reshape(3 * num_atoms, 3 * num_atoms)
    phi = 0.5 * (phi + phi.T)
    translations = np.tile(np.eye(3), (num_atoms, 1)) / np.sqrt(num_atoms)  # 3N×3 orthonormal
    projector = np.eye(3 * num_atoms) - translations @ translations.T
    return projector @ phi @ projector


def gamma_dielectric(
    force_constants,
    masses,
    born_charges,
    volume: float,
    *,
    acoustic_sum_rule: bool = True,
    charge_neutrality: bool = True,
) -> GammaDielectric:
    """Γ phonons, mode oscillator strengths and ε_ion.

    :param force_constants: real 3N×3N Γ force constants Φ(κα, κ'β) in Ry/bohr² (the ph.x dyn file).
    :param masses: N atomic masses in amu.
    :param born_charges: N×3×3 Born effective charges in e.
    :param volume: cell volume Ω in bohr³.
    """
    masses = np.asarray(masses, dtype=float)
    num_atoms = len(masses)
    phi = np.asarray(force_constants, dtype=float)
    if phi.shape != (3 * num_atoms, 3 * num_atoms):
        raise ValueError(f'force constants must be {3 * num_atoms}x{3 * num_atoms}, got {phi.shape}')
    charges = np.asarray(born_charges, dtype=float)
    if charges.shape != (num_atoms, 3, 3):
        raise ValueError(f'Born charges must be {num_atoms}x3x3, got {charges.shape}')
    if not volume > 0:
        raise ValueError(f'the cell volume must be positive, got {volume}')

    total = charges.sum(axis=0)
    if charge_neutrality:
        charges, total = impose_charge_neutrality(charges)
    if acoustic_sum_rule:
        phi = impose_acoustic_sum_rule(phi)
    phi = 0.5 * (phi + phi.T) * RY_TO_HA

    inverse_sqrt_mass = np.repeat(1.0 / np.sqrt(masses * AMU_TO_ME), 3)
    dynamical_matrix = phi * np.outer(inverse_sqrt_mass, inverse_sqrt_mass)
    eigenvalues, eigenvectors = np.linalg.eigh(dynamical_matrix)

    # The acoustic modes are the three with the largest weight on rigid translations (√M-weighted),
    # not simply the three lowest: an unstable optical mode can lie below them.
    translations = np.tile(np.eye(3), (num_atoms, 1)) / inverse_sqrt_mass[:, None]
    translations /= np.linalg.norm(translations, axis=0)
    weight = np.sum((translations.T @ eigenvectors) ** 2, axis=0)
    acoustic = np.zeros(3 * num_atoms, dtype=bool)
    acoustic[np.argsort(weight)[-3:]] = True

    displacements = eigenvectors * inverse_sqrt_mass[:, None]  # U_m(κβ), columns are modes
    mode_charges = np.einsum('kab,kbm->ma', charges, displacements.reshape(num_atoms, 3, -1))
    strengths = np.einsum('ma,mb->mab', mode_charges, mode_charges)

    frequencies = np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * HA_TO_CM1
    # Only real optical modes contribute; an imaginary or vanishing one makes the crystal unstable
    # (flagged below) and its 1/ω² term has no static meaning.
    threshold = (IMAGINARY_TOLERANCE_CM1 / HA_TO_CM1) ** 2
    contributing = ~acoustic & (eigenvalues > threshold)
    epsilon_ionic = (4 * np.pi / volume) * np.einsum(
        'mab,m->ab', strengths[contributing], 1.0 / eigenvalues[contributing]
    )
    stable = bool(np.all(frequencies[~acoustic] > -IMAGINARY_TOLERANCE_CM1))
    return GammaDielectric(
        epsilon_ionic=0.5 * (epsilon_ionic + epsilon_ionic.T),
        frequencies=frequencies,
        acoustic=acoustic,
        oscillator_strengths=strengths,
        born_charges=charges,
        born_charge_neutrality_violation=float(np.abs(total).max()),
        dynamically_stable=stable,
    )


@dataclasses.dataclass
class DynFile:
    """What a ph.x dynamical-matrix file holds at one q point (units as written: Ry/bohr², amu, bohr)."""

    symbols: list[str]
    masses: np.ndarray  #: N, amu
    q_point: np.ndarray  #: 2π/alat
    force_constants: np.ndarray  #: 3N×3N complex, Ry/bohr²
    epsilon_electronic: np.ndarray | None  #: 3×3 when ph.x ran with epsil
    born_charges: np.ndarray | None  #: N×3×3 (E-U) when ph.x ran with epsil
    frequencies: np.ndarray  #: as printed by ph.x (no sum rule), cm⁻¹


_FLOAT = r'[-+]?\d*\.\d+(?:[EeDd][-+]?\d+)?'


def read_dyn_file(text: str) -> DynFile:
    """Read the first q point of a ph.x dynamical-matrix file (``fildyn``, QE text format)."""
    lines = text.splitlines()
    if not lines or 'Dynamical matrix file' not in lines[0]:
        raise ValueError('not a ph.x dynamical-matrix file')
    header = lines[2].split()
    num_species, num_atoms, ibrav = int(header[0]), int(header[1]), int(header[2])
    index = 3 + (4 if ibrav == 0 else 0)
    species = []
    for line in lines[index : index + num_species]:
        _, name, mass = line.split("'")
        species.append((name.strip(), float(mass) / 911.4442421323))  # amu_Ry, as QE writes masses
    index += num_species
    atom_species = [int(line.split()[1]) - 1 for line in lines[index : index + num_atoms]]
    symbols = [species[s][0] for s in atom_species]
    masses = np.array([species[s][1] for s in atom_species])

    body = '\n'.join(lines[index + num_atoms :])
    q_match = re.search(rf'q = \(\s*({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*\)', body)
    if q_match is None:
        raise ValueError('no q point in the dynamical-matrix file')
    force_constants = np.zeros((3 * num_atoms, 3 * num_atoms), dtype=complex)
    block = body[q_match.end() :].split('Dielectric Tensor')[0].split('Diagonalizing')[0].splitlines()
    block = [line.split() for line in block if line.strip()]
    position = 0
    for _ in range(num_atoms * num_atoms):
        first, second = int(block[position][0]) - 1, int(block[position][1]) - 1
        for alpha in range(3):
            values = np.array(block[position + 1 + alpha], dtype=float)
            force_constants[3 * first + alpha, 3 * second : 3 * second + 3] = values[0::2] + 1j * values[1::2]
        position += 4

    epsilon = None
    charges = None
    if 'Dielectric Tensor:' in body:
        part = body.split('Dielectric Tensor:')[1].split('Effective Charges')[0]
        epsilon = np.array(re.findall(_FLOAT, part), dtype=float).reshape(3, 3)
    if 'Effective Charges E-U' in body:
        part = body.split('Effective Charges E-U')[1].split('Effective Charges U-E')[0]
        part = part.split('Diagonalizing')[0].split(':', 1)[1]
        values = [v for chunk in part.split('atom #')[1:] for v in re.findall(_FLOAT, chunk)]
        charges = np.array(values, dtype=float).reshape(num_atoms, 3, 3)
    frequencies = np.array(re.findall(rf'freq \(\s*\d+\) =\s*{_FLOAT} \[THz\] =\s*({_FLOAT}) \[cm-1\]', body))
    return DynFile(
        symbols=symbols,
        masses=masses,
        q_point=np.array(q_match.groups(), dtype=float),
        force_constants=force_constants,
        epsilon_electronic=epsilon,
        born_charges=charges,
        frequencies=frequencies.astype(float),
    )
