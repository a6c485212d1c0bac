"""Import of mp-dfpt-extra frames into AiiDA: provenance, Born charges, no gap, idempotence, overlap, and
both data sets in one group. Small files cut from the real one; figures checked against the raw text."""

import re

import numpy as np
import pytest
from aiida.orm import Group, QueryBuilder, SinglefileData, StructureData

from aiida_dielectrics.calculations.imports import run_import, run_petousis2017_import
from aiida_dielectrics.calculations.training import group_inputs
from aiida_dielectrics.data import DielectricData
from aiida_dielectrics.science.datasets import mp_dfpt_extra
from aiida_dielectrics.tools.query import query_dielectrics

SOURCE = mp_dfpt_extra.SOURCE


def write_frames(path, frames):
    path.write_text(''.join(frames))
    return path


def mean_polarisability_permittivity(frame: str) -> float:
    """ε∞ scalar from the frame's text: 1 + 4π·(trace of α)/3."""
    alpha = np.array(re.search(r'REF_polarisability="([^"]*)"', frame).group(1).split(), dtype=float)
    return 1 + 4 * np.pi * alpha[[0, 4, 8]].mean()


@pytest.fixture(scope='module')
def imported(aiida_profile, mp_dfpt_extra_frames, tmp_path_factory):
    aiida_profile.reset_storage()
    path = write_frames(tmp_path_factory.mktemp('extra') / 'head10.extxyz', mp_dfpt_extra_frames[:10])
    return path, *run_import(SOURCE, path)


def test_import_creates_linked_nodes_with_born_charges_and_no_gap(imported, mp_dfpt_extra_frames):
    _, report, node = imported
    assert report == {'imported': 10, 'already_present': 0, 'skipped': []}
    assert node.is_finished_ok and node.process_type == 'aiida.calculations:dielectrics.import_mp_dfpt_extra'
    assert isinstance(node.inputs.extxyz_file, SinglefileData)
    assert Group.collection.get(label=SOURCE).count() == 2 * 10
    dielectric = node.outputs.dielectrics.CO5U_a3ed766e95
    assert dielectric.creator.uuid == node.uuid
    assert (dielectric.engine, dielectric.band_gap, dielectric.fom) == ('imported', None, None)
    assert dielectric.base.attributes.get('source_id') == 'CO5U-a3ed766e95'
    assert dielectric.diel_elec == pytest.approx(mean_polarisability_permittivity(mp_dfpt_extra_frames[0]))
    assert dielectric.get_array('born_charges').shape == (14, 3, 3)
    assert dielectric.get_array('born_charges')[0, 0, 0] == pytest.approx(4.93923)
    assert node.outputs.structures.CO5U_a3ed766e95.get_formula() == 'C2O10U2'


def test_reimport_and_overlapping_file_add_only_new_frames(imported, mp_dfpt_extra_frames, tmp_path):
    path, _, _ = imported
    report, node = run_import(SOURCE, path)
    assert node is None and report['already_present'] == 10
    overlap = write_frames(tmp_path / 'frames6to14.extxyz', mp_dfpt_extra_frames[6:14])
    report, node = run_import(SOURCE, overlap)
    assert (report['imported'], report['already_present']) == (4, 4)
    assert node.is_finished_ok
    assert QueryBuilder().append(DielectricData, filters={'attributes.source': SOURCE}).count() == 14
    assert Group.collection.get(label=SOURCE).count() == 2 * 14


def test_bad_frame_is_skipped_with_its_line(imported, mp_dfpt_extra_frames, tmp_path):
    frames = mp_dfpt_extra_frames[20:22]
    broken = re.sub(r' REF_dielectric_ionic="[^"]*"', '', frames[1])
    report, node = run_import(SOURCE, write_frames(tmp_path / 'broken.extxyz', [frames[0], broken]))
    line = frames[0].count('\n') + 1
    assert report['imported'] == 1
    assert report['skipped'] == [{'line': line, 'reason': 'REF_dielectric_ionic is missing'}]
    assert node.outputs.report.get_dict() == report


def test_gapless_results_have_no_fom_in_queries(imported):
    rows = query_dielectrics(group=SOURCE, order_by='diel_total')
    assert rows and all(row['band_gap'] is None and row['fom'] is None for row in rows)
    assert query_dielectrics(group=SOURCE, fom_min=0) == []


def test_both_data_sets_in_one_group_pair_for_training(imported, petousis_head, tmp_path):
    run_petousis2017_import(petousis_head(tmp_path / 'petousis4.csv', 4), group_label='both')
    path, _, _ = imported
    report, node = run_import(SOURCE, path, 'both')
    assert node is None and report['imported'] == 0  # already imported: the nodes are added to the group
    structures, dielectrics = group_inputs('both')
    sources = {node.base.attributes.get('source') for node in dielectrics.values()}
    assert sources == {'petousis2017', SOURCE}
    # The group holds this file's ten frames, not the other mp-dfpt-extra rows imported in this module.
    assert QueryBuilder().append(DielectricData, filters={'attributes.source': SOURCE}).count() > 10
    assert len(dielectrics) == 4 + 10
    assert all(isinstance(node, StructureData) for node in structures.values())
