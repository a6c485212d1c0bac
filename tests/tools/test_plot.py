"""The Pareto-front plot: matching rule, figure content, and what headless Chromium actually draws."""

import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aiida_dielectrics.cli import cli
from aiida_dielectrics.data import DielectricData, PredictionData
from aiida_dielectrics.science.selection import pareto_front
from aiida_dielectrics.tools.plot import campaign_tables, pareto_figure, structure_uuids
from tests.campaign_nodes import CAMPAIGN, build_campaign, build_reference

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
#: CI installs chromium (scripts/install.sh), so there a missing browser is a failure, not a skip.
SKIP_WITHOUT_CHROMIUM = CHROMIUM is None and not os.environ.get('CI')


@pytest.fixture(scope='module')
def campaign(aiida_profile, petousis_csv):
    aiida_profile.reset_storage()
    group = build_campaign()
    build_reference(petousis_csv)
    return group


def test_structure_rule_matches_predictions_to_dfpt_results(campaign):
    predictions = structure_uuids(PredictionData, 'campaign')
    results = structure_uuids(DielectricData, 'campaign')
    assert len(predictions) == 4 and len(results) == 3
    # Every result maps to the structure a prediction was made for, including the relaxed BaTiO3.
    assert set(results.values()) < set(predictions.values())
    background, predicted, computed = campaign_tables('campaign', 'reference')
    assert len(background) == 40
    pairs = predicted.merge(computed, on='structure_uuid', suffixes=('_ml', '_dfpt'))
    assert sorted(pairs['formula_ml']) == sorted(pairs['formula_dfpt']) == ['BaTiO3', 'CaO', 'MgO']
    assert (pairs['protostructure_dfpt'] == pairs['protostructure_ml']).all()
    assert sorted(computed['protostructure']) == ['proto-batio3', 'proto-cao', 'proto-mgo']


def test_figure_has_points_fronts_arrows_and_iso_lines(campaign):
    background, predictions, results = campaign_tables('campaign', 'reference')
    figure = pareto_figure(background, predictions, results)
    traces = {trace.name: trace for trace in figure.data}
    assert len(traces['DFPT reference data'].x) == 40
    assert len(traces['ML predictions'].x) == len(CAMPAIGN)
    assert len(traces['DFPT results (campaign)'].x) == 3
    assert len(figure.layout.annotations) == 3
    assert figure.layout.xaxis.type == 'log'
    # Arrow heads sit on the DFPT results, in log10 units on the log axis.
    heads = sorted((round(a.x, 6), round(a.y, 6)) for a in figure.layout.annotations)
    expected = sorted(
        (round(np.log10(x), 6), round(y, 6))
        for x, y in zip(results['diel_total'], results['band_gap'], strict=True)
    )
    assert heads == expected
    dfpt = pd.concat([background, results])
    front = dfpt[pareto_front(dfpt['band_gap'], dfpt['diel_total'])]
    assert sorted(traces['Pareto front (DFPT)'].x) == sorted(front['diel_total'])
    # Every iso-line point has ε·E_gap equal to one of the levels.
    iso = traces['Φ = ε·E_gap iso-lines']
    products = {round(x * y) for x, y in zip(iso.x, iso.y, strict=True) if x is not None}
    assert products <= {20, 50, 100, 240, 500, 1000} and len(products) >= 3
    hover = traces['ML predictions'].customdata[0]
    assert hover[0] == predictions['formula'][0] and hover[5] == predictions['uuid'][0]


def test_cli_errors(campaign, tmp_path):
    result = CliRunner().invoke(cli, ['plot', '--group', 'missing', '-o', str(tmp_path / 'x.html')])
    assert result.exit_code == 1 and "no group with label 'missing'" in result.output


@pytest.mark.skipif(
    SKIP_WITHOUT_CHROMIUM, reason='chromium is not installed (scripts/install.sh installs it)'
)
def test_headless_chromium_draws_the_plot(campaign, tmp_path):
    assert CHROMIUM, 'chromium not found: run scripts/install.sh'
    output = tmp_path / 'pareto.html'
    result = CliRunner().invoke(
        cli, ['plot', '--group', 'campaign', '--background', 'reference', '--output', str(output)]
    )
    assert result.exit_code == 0, result.output
    html = output.read_text()
    # plotly.js is inlined, no script is fetched: the file works offline.
    assert not re.search(r'<script[^>]*\ssrc=', html) and len(html) > 3_000_000
    dom = subprocess.run(
        [
            CHROMIUM,
            '--headless',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            '--no-first-run',
            f'--user-data-dir={tmp_path / "profile"}',
            '--virtual-time-budget=10000',
            '--dump-dom',
            output.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    legend = re.findall(r'class="legendtext"[^>]*>([^<]*)<', dom)
    assert legend == [
        'Φ = ε·E_gap iso-lines',
        'DFPT reference data',
        'ML predictions',
        'DFPT results (campaign)',
        'Pareto front (DFPT)',
        'Pareto front (predicted)',
    ]
    # The scatter layer holds one <g class="trace scatter"> per trace, in order; count drawn markers.
    svg = dom[dom.index('<g class="scatterlayer') :]  # the inlined plotly.js also mentions the classes
    traces = re.split(r'<g class="trace scatter', svg)[1:]
    assert len(traces) == 6
    markers = [len(re.findall(r'<path class="point\b', trace)) for trace in traces]
    assert markers[1:4] == [40, len(CAMPAIGN), 3]
    assert len(re.findall(r'<g class="annotation-arrow-g"', svg)) == 3
