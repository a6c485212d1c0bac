"""The interactive Pareto-front plot of a campaign: ε_total against E_gap with Φ iso-lines.

:func:`pareto_figure` is pure (pandas tables in, a plotly figure out); :func:`campaign_tables` reads the
tables from AiiDA. A prediction and a DFPT result are drawn with an arrow from one to the other when
they belong to the same structure node, found by this rule (:func:`structure_uuids`):

* a DFPT result's structure is the input labelled ``structure`` of a work chain that returned it (the
  DFPT work chain's input, before any relaxation); failing that, the structure input of its creator;
* a prediction's structure is the structure input of its creator with the same key: output
  ``predictions__<key>`` ↔ input ``structures__<key>`` (or the creator's only structure input).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from aiida_dielectrics.science.selection import pareto_front

#: Φ (eV) of the iso-lines; 240 eV is the study's hit threshold.
FOM_LEVELS = (20, 50, 100, 240, 500, 1000)
#: Columns of the tables :func:`pareto_figure` takes (``structure_uuid`` only for matching).
COLUMNS = ('pk', 'uuid', 'formula', 'protostructure', 'band_gap', 'diel_total', 'fom', 'e_above_hull')

HOVER = (
    '<b>%{customdata[0]}</b> %{customdata[1]}<br>ε_total %{x:.2f}, E_gap %{y:.2f} eV<br>'
    'Φ %{customdata[2]:.1f} eV, E_hull %{customdata[3]} eV/atom<br>pk %{customdata[4]} · %{customdata[5]}'
    '<extra>%{fullData.name}</extra>'
)


def plottable(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that a log-ε axis can show (ε_total > 0 and a finite gap), with every column present."""
    table = table.reindex(columns=[*COLUMNS, *(c for c in table.columns if c not in COLUMNS)])
    diel = pd.to_numeric(table['diel_total'], errors='coerce')
    gap = pd.to_numeric(table['band_gap'], errors='coerce')
    return table[(diel > 0) & np.isfinite(gap)].reset_index(drop=True)


def hover_data(table: pd.DataFrame) -> np.ndarray:
    hull = ['-' if pd.isna(value) else f'{value:.3f}' for value in table['e_above_hull']]
    return np.column_stack(
        [
            table['formula'].fillna('?'),
            table['protostructure'].fillna(''),
            pd.to_numeric(table['fom'], errors='coerce'),
            hull,
            table['pk'],
            table['uuid'],
        ]
    ).astype(object)


def points(table: pd.DataFrame, name: str, **marker) -> go.Scatter:
    return go.Scatter(
        x=table['diel_total'],
        y=table['band_gap'],
        mode='markers',
        name=name,
        marker=marker,
        customdata=hover_data(table),
        hovertemplate=HOVER,
    )


def front_line(table: pd.DataFrame, name: str, **line) -> go.Scatter:
    """The non-dominated points of ``table`` joined by the staircase that bounds what they dominate."""
    front = table[pareto_front(table['band_gap'], table['diel_total'])]
    front = front.sort_values(['diel_total', 'band_gap'], ascending=[True, False])
    return go.Scatter(
        x=front['diel_total'],
        y=front['band_gap'],
        mode='lines+markers',
        line_shape='vh',
        name=name,
        line=line,
        marker={'size': 11, 'symbol': 'circle-open', 'color': line.get('color')},
        customdata=hover_data(front),
        hovertemplate=HOVER,
    )


def iso_lines(x_range: tuple[float, float], y_max: float, levels=FOM_LEVELS) -> go.Scatter:
    """Curves E_gap = Φ/ε_total for each level, in one trace (gaps between curves), labelled at the end."""
    x = np.geomspace(*x_range, 200)
    xs, ys, texts = [], [], []
    for level in levels:
        y = level / x
        keep = y <= y_max
        if keep.sum() < 2:
            continue
        xs += [*x[keep], None]
        ys += [*y[keep], None]
        texts += [''] * (int(keep.sum()) - 1) + [f'Φ={level} eV', '']
    return go.Scatter(
        x=xs,
        y=ys,
        mode='lines+text',
        text=texts,
        textposition='top left',
        textfont={'size': 10, 'color': 'gray'},
        line={'color': 'lightgray', 'dash': 'dot'},
        name='Φ = ε·E_gap iso-lines',
        hoverinfo='skip',
    )


def arrow_pairs(predictions: pd.DataFrame, results: pd.DataFrame) -> list[tuple[int, int]]:
    """``(prediction row, result row)`` for each prediction and DFPT result of the same structure node."""
    if 'structure_uuid' not in predictions or 'structure_uuid' not in results:
        return []
    rows = {}
    for index, uuid in enumerate(results['structure_uuid']):
        if isinstance(uuid, str):
            rows.setdefault(uuid, []).append(index)
    return [
        (index, result)
        for index, uuid in enumerate(predictions['structure_uuid'])
        for result in rows.get(uuid, [])
    ]


def pareto_figure(
    background: pd.DataFrame, predictions: pd.DataFrame, results: pd.DataFrame, title: str = ''
) -> go.Figure:
    """The figure: reference DFPT data, predictions, campaign DFPT results, arrows, fronts, Φ iso-lines.

    Each table has :data:`COLUMNS` (missing ones are shown as blank); predictions and results may carry
    ``structure_uuid`` to draw an arrow from a prediction to the DFPT result of the same structure.
    """
    background, predictions, results = map(plottable, (background, predictions, results))
    everything = pd.concat([background, predictions, results])
    if everything.empty:
        raise ValueError('nothing to plot: no point has ε_total > 0 and a band gap')
    x_range = (max(everything['diel_total'].min() / 1.5, 0.5), everything['diel_total'].max() * 1.5)
    y_max = max(everything['band_gap'].max() * 1.08, 1.0)

    figure = go.Figure()
    figure.add_trace(iso_lines(x_range, y_max))
    if not background.empty:
        figure.add_trace(points(background, 'DFPT reference data', size=5, color='#b0b0b0', opacity=0.6))
    if not predictions.empty:
        figure.add_trace(points(predictions, 'ML predictions', size=8, color='#1f77b4', symbol='diamond'))
    if not results.empty:
        figure.add_trace(points(results, 'DFPT results (campaign)', size=9, color='#d62728'))
    dfpt = pd.concat([background, results])
    if not dfpt.empty:
        figure.add_trace(front_line(dfpt, 'Pareto front (DFPT)', color='#d62728', width=2))
    if not predictions.empty:
        figure.add_trace(front_line(predictions, 'Pareto front (predicted)', color='#1f77b4', dash='dash'))
    for prediction, result in arrow_pairs(predictions, results):
        start, end = predictions.iloc[prediction], results.iloc[result]
        figure.add_annotation(
            # Annotation positions on a log axis are given in log10 units.
            x=np.log10(end['diel_total']),
            y=end['band_gap'],
            ax=np.log10(start['diel_total']),
            ay=start['band_gap'],
            xref='x',
            yref='y',
            axref='x',
            ayref='y',
            showarrow=True,
            arrowhead=3,
            arrowwidth=1.5,
            arrowcolor='#555',
            text='',
            hovertext=f'{start["formula"]}: prediction → DFPT',
        )
    figure.update_layout(
        title=title or 'Band gap vs permittivity',
        xaxis={'type': 'log', 'title': 'ε_total', 'range': list(np.log10(x_range))},
        yaxis={'title': 'E_gap (eV)', 'range': [0, y_max]},
        template='plotly_white',
        hovermode='closest',
        legend={'yanchor': 'top', 'y': 0.99, 'xanchor': 'right', 'x': 0.99},
    )
    return figure


def write_html(figure: go.Figure, path) -> None:
    """A self-contained HTML file (plotly.js inlined, so it opens offline)."""
    figure.write_html(str(path), include_plotlyjs=True, full_html=True, div_id='pareto')


# --- reading the tables from AiiDA ---------------------------------------------------------------


def node_table(node_class, group: str) -> pd.DataFrame:
    """One row per ``node_class`` node in ``group`` with :data:`COLUMNS` (missing attributes → None)."""
    from aiida.orm import Group, QueryBuilder

    attributes = COLUMNS[2:]
    query = QueryBuilder().append(Group, filters={'label': group}, tag='group')
    query.append(
        node_class, with_group='group', project=['id', 'uuid', *(f'attributes.{name}' for name in attributes)]
    )
    return pd.DataFrame(query.all(), columns=list(COLUMNS))


def key_of(label: str) -> str:
    """The key of a namespaced link label (``predictions__mgo`` → ``mgo``)."""
    return label.rsplit('__', 1)[-1]


def structure_uuids(node_class, group: str) -> dict[int, str]:
    """pk → uuid of the structure each ``node_class`` node in ``group`` belongs to (see module rule)."""
    from aiida.common.links import LinkType
    from aiida.orm import CalculationNode, Group, QueryBuilder, StructureData, WorkflowNode

    def base(query):
        query.append(Group, filters={'label': group}, tag='group')
        query.append(node_class, with_group='group', tag='node', project='id')
        return query

    found = {}
    by_creator = base(QueryBuilder())
    by_creator.append(
        CalculationNode, with_outgoing='node', tag='creator', edge_tag='out', edge_project='label'
    )
    by_creator.append(
        StructureData,
        with_outgoing='creator',
        tag='structure',
        edge_tag='in',
        edge_project='label',
        project='uuid',
    )
    inputs = {}
    for row in by_creator.dict():
        inputs.setdefault(row['node']['id'], []).append(
            (row['out']['label'], row['in']['label'], row['structure']['uuid'])
        )
    for pk, candidates in inputs.items():
        if len({uuid for _, _, uuid in candidates}) == 1:
            found[pk] = candidates[0][2]
            continue
        same_key = {uuid for out, into, uuid in candidates if key_of(out) == key_of(into)}
        if len(same_key) == 1:
            found[pk] = same_key.pop()

    by_workflow = base(QueryBuilder())
    by_workflow.append(
        WorkflowNode, with_outgoing='node', tag='workflow', edge_filters={'type': LinkType.RETURN.value}
    )
    by_workflow.append(
        StructureData, with_outgoing='workflow', edge_filters={'label': 'structure'}, project='uuid'
    )
    for pk, uuid in by_workflow.all():
        found[pk] = uuid  # the work chain's input wins over a relaxed structure the creator saw
    return found


def campaign_tables(group: str, background: str | None = None) -> tuple[pd.DataFrame, ...]:
    """``(background, predictions, results)`` tables of a campaign group and a reference group."""
    from aiida_dielectrics.data import DielectricData, PredictionData

    predictions, results = (node_table(node_class, group) for node_class in (PredictionData, DielectricData))
    for table, node_class in ((predictions, PredictionData), (results, DielectricData)):
        table['structure_uuid'] = table['pk'].map(structure_uuids(node_class, group))
    # DFPT results carry no protostructure: show the one of the prediction for the same structure.
    labels = predictions.dropna(subset=['structure_uuid']).drop_duplicates('structure_uuid')
    results['protostructure'] = results['structure_uuid'].map(
        labels.set_index('structure_uuid')['protostructure']
    )
    reference = node_table(DielectricData, background) if background else pd.DataFrame(columns=COLUMNS)
    return reference, predictions, results
