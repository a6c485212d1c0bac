"""Shared fixtures: a temporary AiiDA profile (no services) and the offline resources in ../shared."""

import os
import pathlib

import pytest

pytest_plugins = ['aiida.tools.pytest_fixtures']

#: Offline data, models and pseudos; CI and tests point here, the package never does.
SHARED = pathlib.Path(
    os.environ.get('AIIDA_DIELECTRICS_SHARED', pathlib.Path(__file__).parents[1] / '..' / 'shared')
)


@pytest.fixture(scope='session')
def shared():
    """The ``shared/`` folder with data, models, pseudos and fixtures (skips nothing: CI has it)."""
    if not SHARED.is_dir():
        raise FileNotFoundError(f'{SHARED} not found: set AIIDA_DIELECTRICS_SHARED')
    return SHARED.resolve()


@pytest.fixture(scope='session')
def petousis_csv(shared):
    return shared / 'data' / 'petousis2017' / 'dielectric_constant.csv'


@pytest.fixture
def qe(aiida_localhost, shared):
    """The shared PseudoDojo folder as a cutoffs family and pw.x/ph.x codes on localhost."""
    from qe_setup import FAMILY

    from aiida_dielectrics import environment

    folder = shared / 'pseudos' / 'PseudoDojo-0.4-PBE-SR-noCC-standard'
    hints = shared / 'pseudos' / 'PseudoDojo-0.4-PBE-SR-standard-hints.djson'
    environment.install_pseudo_family(folder, FAMILY, hints=hints)
    codes = environment.register_qe_codes(aiida_localhost.label)
    if 'pw' not in codes or 'ph' not in codes:
        pytest.fail('pw.x and ph.x must be on PATH (Debian: apt-get install quantum-espresso)')
    return codes['pw'][0], codes['ph'][0]
