"""Convergence of the QE engine's protocols on MgO: ε∞ and ε_ion per protocol, side by side in one run.

Each protocol runs the whole interface (symmetrise, vc-relax at its own settings, scf, ph.x at Γ) on
rocksalt MgO from the experimental lattice (4.212 Å), on a throw-away ``verdi presto`` profile; the table
shows each protocol's values, their difference from the most precise one run, the relaxed lattice and
QE's own wall time (its ratio to the first protocol's cancels the machine's load)::

    python benchmarks/dfpt_protocols.py --protocols fast moderate precise --output dfpt-protocols.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile

from bench_dfpt import prepare_profile, qe_builder, qe_wall_seconds

#: Experiment (room temperature): ε∞ 2.96–3.0, ε_ion 6.8, a = 4.212 Å.
MGO_LATTICE = 4.212


def mgo():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        'Fm-3m', Lattice.cubic(MGO_LATTICE), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def run_protocol(codes, protocol: str, mpi: int) -> dict:
    from aiida.engine import run_get_node

    builder = qe_builder(mgo(), codes, protocol, mpi)
    results, node = run_get_node(builder)
    row = {'pk': node.pk, 'exit_status': node.exit_status, 'qe_wall_seconds': qe_wall_seconds(node)}
    if not node.is_finished_ok:
        return {**row, 'exit_message': node.exit_message}
    dielectric, structure = results['dielectric'], results['structure']
    return {
        **row,
        'diel_elec': dielectric.diel_elec,
        'diel_ionic': dielectric.diel_ionic,
        'band_gap': dielectric.band_gap,
        'lattice': (4 * structure.get_cell_volume()) ** (1 / 3),  # 2-atom primitive: a³/4
    }


def report(rows: dict) -> str:
    finished = {protocol: row for protocol, row in rows.items() if row['exit_status'] == 0}
    reference = finished[list(finished)[-1]] if finished else None
    base = next(iter(rows.values()))['qe_wall_seconds']
    last = list(finished)[-1] if finished else '-'
    lines = [
        f'| protocol | a (Å) | ε∞ | ε_ion | ε∞ vs {last} | ε_ion vs {last} | PBE gap (eV) | QE wall (s) |',
        '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for protocol, row in rows.items():
        wall = f'{row["qe_wall_seconds"]:.0f} ({row["qe_wall_seconds"] / base:.2f}×)'
        if row['exit_status'] != 0:
            lines.append(
                f'| {protocol} | failed: {row["exit_status"]} {row["exit_message"]} | | | | | | {wall} |'
            )
            continue
        lines.append(
            f'| {protocol} | {row["lattice"]:.3f} | {row["diel_elec"]:.3f} | {row["diel_ionic"]:.3f} | '
            f'{100 * (row["diel_elec"] / reference["diel_elec"] - 1):+.1f} % | '
            f'{100 * (row["diel_ionic"] / reference["diel_ionic"] - 1):+.1f} % | {row["band_gap"]:.2f} | {wall} |'
        )
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--protocols', nargs='+', default=['fast', 'moderate', 'precise'])
    parser.add_argument('--mpi', type=int, default=2, help='MPI ranks per run.')
    parser.add_argument(
        '--output', type=pathlib.Path, help='JSON file for the results (rewritten after each run).'
    )
    arguments = parser.parse_args()

    os.environ.setdefault('AIIDA_PATH', tempfile.mkdtemp(prefix='aiida-bench-protocols-'))
    codes = prepare_profile()
    rows = {}
    for protocol in arguments.protocols:
        rows[protocol] = run_protocol(codes, protocol, arguments.mpi)
        if arguments.output:
            arguments.output.write_text(json.dumps(rows, indent=1))
    print(f'MgO from a = {MGO_LATTICE} Å, relaxed per protocol, {arguments.mpi} MPI ranks\n')
    print(report(rows))


if __name__ == '__main__':
    main()
