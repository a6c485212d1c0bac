"""``aiida_dielectrics.science.phonons`` against the reference ph.x outputs in ``shared/fixtures/qe``."""

import re

import numpy as np
import pytest

from aiida_dielectrics.science import phonons

FLOAT = r'[-+]?\d+\.\d+'


def read_ph_stdout(text):
    """ε∞, Born charges (d Force / dE, before any sum rule), Γ frequencies, masses and Ω printed by ph.x."""
    volume = float(re.search(rf'unit-cell volume\s*=\s*({FLOAT})', text).group(1))
    first_q = text.split('Atoms inside the unit cell')[1].split('Computing dynamical matrix')[0]
    masses = [float(m) for m in re.findall(rf'^\s+\d+\s+\w+\s+({FLOAT})\s+tau\(', first_q, re.MULTILINE)]
    block = text.split('Dielectric constant in cartesian axis')[1]
    epsilon = np.array(re.findall(FLOAT, block)[:9], dtype=float).reshape(3, 3)
    charges_block = block.split('Effective charges (d Force / dE) in cartesian axis')[1]
    rows = re.findall(rf'E[xyz]\s+\(\s*({FLOAT})\s+({FLOAT})\s+({FLOAT})\s*\)', charges_block)
    charges = np.array(rows[: 3 * len(masses)], dtype=float).reshape(len(masses), 3, 3)
    gamma = text.split('Diagonalizing the dynamical matrix')[1].split('Mode symmetry')[0]
    frequencies = np.array(re.findall(rf'=\s*({FLOAT}) \[cm-1\]', gamma), dtype=float)
    return volume, np.array(masses), epsilon, charges, frequencies


def cubic_diatomic_force_constants(frequency_cm1, masses):
    """Γ force constants of a two-atom cubic crystal with the sum rule, from its TO frequency.

    By symmetry Φ = k [[1, −1], [−1, 1]] ⊗ 1₃ with k = μ ω², so ω_TO fixes Φ completely.
    """
    reduced_mass = phonons.AMU_TO_ME * masses[0] * masses[1] / (masses[0] + masses[1])
    stiffness = reduced_mass * (frequency_cm1 / phonons.HA_TO_CM1) ** 2 / phonons.RY_TO_HA
    return np.kron(np.array([[1.0, -1.0], [-1.0, 1.0]]), np.eye(3)) * stiffness


def test_alas_ionic_permittivity_obeys_lyddane_sachs_teller(shared):
    """QE's own LO–TO splitting (matdyn, non-analytic term) fixes ε0/ε∞ = (ω_LO/ω_TO)²: units and 4π check."""
    folder = shared / 'fixtures' / 'qe' / 'AlAs-ph-gamma-ref'
    volume, masses, epsilon, charges, _ = read_ph_stdout((folder / 'alas.ph.out').read_text())
    modes = (folder / 'matdyn.modes').read_text().split('q =')[1]
    gamma = np.array(re.findall(rf'=\s*({FLOAT}) \[cm-1\]', modes), dtype=float)
    transverse, longitudinal = gamma[3], gamma[5]
    assert longitudinal > transverse + 30  # the Γ block of matdyn.modes has the LO mode last

    result = phonons.gamma_dielectric(
        cubic_diatomic_force_constants(transverse, masses), masses, charges, volume
    )
    expected = epsilon[0, 0] * ((longitudinal / transverse) ** 2 - 1)
    np.testing.assert_allclose(result.epsilon_ionic, expected * np.eye(3), rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(result.optical_frequencies, transverse, rtol=1e-9)
    np.testing.assert_allclose(result.frequencies[result.acoustic], 0, atol=1e-3)
    # the oscillator strengths of the three TO modes carry all of ε_ion
    strength = np.trace(result.oscillator_strengths[~result.acoustic].sum(axis=0)) / 3
    omega = transverse / phonons.HA_TO_CM1
    assert 4 * np.pi / volume * strength / omega**2 == pytest.approx(expected, rel=2e-3)


def test_sic_charge_neutrality_matches_ph_x(shared):
    """SiC with an ultrasoft C pseudo: Σ Z* = −2.257; ph.x's corrected charges are ±3.26618."""
    text = (shared / 'fixtures' / 'qe' / 'SiC-ph-gamma-ref' / 'SiC.phG.out').read_text()
    _, _, epsilon, charges, frequencies = read_ph_stdout(text)
    assert epsilon[0, 0] == pytest.approx(11.707519097)
    corrected, total = phonons.impose_charge_neutrality(charges)
    assert total[0, 0] == pytest.approx(-2.25652, abs=2e-5)
    np.testing.assert_allclose(corrected[:, 0, 0], [3.26618, -3.26618], atol=2e-5)
    np.testing.assert_allclose(corrected.sum(axis=0), 0, atol=1e-12)
    assert frequencies[3] == pytest.approx(954.869803)


@pytest.mark.parametrize(
    ('path', 'printed_optical'),
    [
        ('BN-ph-disp-ref/bn.disp.dyn1', [803.276533, 1345.33318, 1345.33318]),
        ('aiida-qe-ph-si-default/DYN_MAT/dynamical-matrix-1', [585.586945] * 3),
    ],
)
def test_dyn_file_frequencies_reproduce_ph_x(shared, path, printed_optical):
    """Diagonalising the dyn file's Φ with its masses, without sum rule, gives the frequencies ph.x printed."""
    dyn = phonons.read_dyn_file((shared / 'fixtures' / 'qe' / path).read_text())
    assert np.abs(dyn.force_constants.imag).max() < 1e-8
    raw = phonons.gamma_dielectric(
        dyn.force_constants.real,
        dyn.masses,
        dyn.born_charges,
        300.0,
        acoustic_sum_rule=False,
        charge_neutrality=False,
    )
    np.testing.assert_allclose(raw.frequencies, dyn.frequencies, atol=2e-4)
    np.testing.assert_allclose(dyn.frequencies[3:], printed_optical)

    fixed = phonons.gamma_dielectric(dyn.force_constants.real, dyn.masses, dyn.born_charges, 300.0)
    np.testing.assert_allclose(fixed.frequencies[fixed.acoustic], 0, atol=1e-3)
    assert fixed.acoustic.sum() == 3
    assert fixed.dynamically_stable
    # with the sum rule the optical modes move by less than the violation it removes
    assert np.all(np.abs(fixed.optical_frequencies - dyn.frequencies[3:]) < np.abs(dyn.frequencies[:3]).max())


def test_bn_dyn_file_tensors_and_anisotropy(shared):
    """Monolayer BN: in-plane ε and Z* ≫ out-of-plane; ε_ion from the mode sum equals Z·Φ⁺·Z."""
    dyn = phonons.read_dyn_file((shared / 'fixtures' / 'qe' / 'BN-ph-disp-ref' / 'bn.disp.dyn1').read_text())
    assert dyn.symbols == ['B', 'N']
    np.testing.assert_allclose(dyn.masses, [10.81, 14.00674], rtol=1e-9)
    np.testing.assert_allclose(
        np.diag(dyn.epsilon_electronic), [2.165990188634, 2.165990188633, 1.192206706387]
    )
    np.testing.assert_allclose(
        dyn.born_charges[0].diagonal(), [2.713475093294, 2.713475093294, 0.243028541528]
    )
    np.testing.assert_allclose(dyn.born_charges[1, 2, 2], -0.249847339706)

    volume = 4.7419**3 * 4.3 * np.sqrt(3) / 2  # ibrav 4: celldm(1)=4.7419 bohr, c/a=4.3
    result = phonons.gamma_dielectric(dyn.force_constants.real, dyn.masses, dyn.born_charges, volume)
    assert result.born_charge_neutrality_violation == pytest.approx(0.0068188, abs=1e-6)
    flat_charges = result.born_charges.transpose(1, 0, 2).reshape(3, 6)  # Z[α, (κβ)]
    phi = phonons.impose_acoustic_sum_rule(dyn.force_constants.real) * phonons.RY_TO_HA
    expected = 4 * np.pi / volume * flat_charges @ np.linalg.pinv(phi, rcond=1e-8) @ flat_charges.T
    np.testing.assert_allclose(result.epsilon_ionic, expected, atol=1e-8)
    assert result.epsilon_ionic[0, 0] == pytest.approx(result.epsilon_ionic[1, 1])
    assert result.epsilon_ionic[0, 0] > 10 * result.epsilon_ionic[2, 2] > 0


def test_imaginary_optical_mode_flags_instability():
    """A negative optical stiffness is an imaginary mode: flagged unstable and left out of ε_ion."""
    masses = np.array([24.305, 15.999])
    phi = -cubic_diatomic_force_constants(200.0, masses)
    result = phonons.gamma_dielectric(phi, masses, np.array([2 * np.eye(3), -2 * np.eye(3)]), 126.0)
    assert not result.dynamically_stable
    np.testing.assert_allclose(result.optical_frequencies, -200.0)
    np.testing.assert_allclose(result.epsilon_ionic, 0)

    soft = phonons.gamma_dielectric(
        -cubic_diatomic_force_constants(phonons.IMAGINARY_TOLERANCE_CM1 / 2, masses),
        masses,
        np.zeros((2, 3, 3)),
        1.0,
    )
    assert soft.dynamically_stable  # within tolerance: numerical noise, not an instability


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match='6x6'):
        phonons.gamma_dielectric(np.eye(3), [1.0, 2.0], np.zeros((2, 3, 3)), 1.0)
    with pytest.raises(ValueError, match='volume'):
        phonons.gamma_dielectric(np.eye(6), [1.0, 2.0], np.zeros((2, 3, 3)), 0.0)
    with pytest.raises(ValueError, match='dynamical-matrix'):
        phonons.read_dyn_file('something else')
