"""DFPT with the QE engine against real references: Petousis 2017 (MP, VASP PBE) ε∞ and ε_ion.

Runs ``dielectrics.dfpt.qe`` through the common interface (symmetrise, vc-relax, scf, ph.x at Γ) on small
real structures from the Petousis data (CIFs from its ``meta``), one after another, on a throw-away
``verdi presto`` profile, and reports finished n/N and the median |relative error| of ε∞ and ε_ion.
Layered materials (:data:`LAYERED`) run on MP's cell without the vc-relax: PBE has no van der Waals term,
so a vc-relax pulls their layers apart (BN: +7.7 % in volume in the first vc-relax, still growing in
the second) and ε would belong to a cell no one measures::

    python benchmarks/bench_dfpt.py --protocol moderate --output dfpt-moderate.json
    python benchmarks/bench_dfpt.py --protocol fast --pools 1 2 --materials mp-8062   # -nk side by side

With several ``--pools`` values every material runs once per value and the table shows QE's own wall
time per variant and their ratio (the machine's load cancels in it). Results are written after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

SHARED = pathlib.Path(
    os.environ.get('AIIDA_DIELECTRICS_SHARED', pathlib.Path(__file__).parents[1] / '..' / 'shared')
)
#: Eight small non-magnetic insulators across the periodic table (2–3 atoms, PBE gap > 1 eV, ε_ion > 1).
MATERIALS = ('mp-8062', 'mp-830', 'mp-22916', 'mp-1672', 'mp-13031', 'mp-241', 'mp-13150', 'mp-22925')
#: Layered (van der Waals bonded) materials among them: DFPT on the MP cell, as Petousis et al. computed it.
LAYERED = frozenset({'mp-13150'})
FAMILY = 'PseudoDojo/0.4/PBE/SR/noCC/standard/upf'


def references(material_ids) -> dict:
    """Petousis rows by material id: structure, ε∞ and ε_ion (mean eigenvalues), PBE gap."""
    import numpy as np

    from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows

    rows = {}
    for row in read_rows(SHARED / 'data' / 'petousis2017' / 'dielectric_constant.csv'):
        if isinstance(row, Row) and row.material_id in material_ids:
            rows[row.material_id] = {
                'structure': row.structure,
                'diel_elec': float(np.linalg.eigvalsh(row.epsilon_electronic).mean()),
                'diel_ionic': float(np.linalg.eigvalsh(row.epsilon_ionic).mean()),
                'band_gap': row.band_gap,
            }
    missing = sorted(set(material_ids) - set(rows))
    if missing:
        raise SystemExit(f'not in the Petousis data: {", ".join(missing)}')
    return rows


def prepare_profile():
    """A new presto profile with the shared pseudos (with cutoff hints) and pw/ph codes on localhost."""
    from aiida_dielectrics.tools import environment

    environment.ensure_profile()
    pseudos = SHARED / 'pseudos'
    environment.install_pseudo_family(
        pseudos / 'PseudoDojo-0.4-PBE-SR-noCC-standard',
        FAMILY,
        hints=pseudos / 'PseudoDojo-0.4-PBE-SR-standard-hints.djson',
    )
    codes = environment.register_qe_codes()
    return {role: codes[role][0] for role in ('pw', 'ph')}


def qe_wall_seconds(node) -> float:
    """Wall time (s) QE itself reports, summed over every pw.x and ph.x run of the work chain (QE writes
    ``12.3s``, ``8m34.84s`` or, past an hour, ``1h13m``)."""
    import re

    from aiida import orm

    total = 0.0
    for calc in node.called_descendants:
        if isinstance(calc, orm.CalcJobNode) and 'retrieved' in calc.outputs:
            text = calc.outputs.retrieved.base.repository.get_object_content('aiida.out')
            found = re.findall(
                r'(?:PWSCF|PHONON)\s*:.*?CPU\s+(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:([\d.]+)s)?\s*WALL', text
            )
            if found:
                hours, minutes, seconds = found[-1]
                total += 3600 * float(hours or 0) + 60 * float(minutes or 0) + float(seconds or 0)
    return total


def qe_builder(structure, codes, protocol: str, mpi: int, relax: bool = True, overrides: dict | None = None):
    """The QE engine's builder through the common interface, with this benchmark's family and job options."""
    from aiida import orm

    from aiida_dielectrics.workflows.dfpt import load_engine

    return load_engine('qe').get_builder_from_protocol(
        orm.StructureData(pymatgen=structure),
        codes=codes,
        protocol=protocol,
        potential_family=FAMILY,
        relax=relax,
        options={
            'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': mpi},
            'max_wallclock_seconds': 7200,
            # Waiting MPI ranks give the CPU back: busy-polling ranks starve each other on a shared machine.
            'environment_variables': {'OMPI_MCA_mpi_yield_when_idle': '1'},
        },
        overrides=overrides,
    )


def run_one(reference: dict, codes, protocol: str, relax: bool, mpi: int, pools: int) -> dict:
    from aiida.engine import run_get_node

    builder = qe_builder(reference['structure'], codes, protocol, mpi, relax, overrides={'pools': pools})
    start = time.perf_counter()
    results, node = run_get_node(builder)
    row = {
        'pk': node.pk,
        'exit_status': node.exit_status,
        'seconds': time.perf_counter() - start,
        'relax': relax,
    }
    row['qe_wall_seconds'] = qe_wall_seconds(node)
    if node.is_finished_ok:
        dielectric = results['dielectric']
        row.update(
            diel_elec=dielectric.diel_elec, diel_ionic=dielectric.diel_ionic, band_gap=dielectric.band_gap
        )
        structure = results['structure']
        row['volume_change'] = (
            structure.get_cell_volume()
            / len(structure.sites)
            / (reference['structure'].volume / len(reference['structure']))
            - 1
        )
    else:
        row['exit_message'] = node.exit_message
    return row


def relative_error(row, reference, name):
    return abs(row[name] - reference[name]) / abs(reference[name])


def volume_column(row) -> str:
    return f'{100 * row["volume_change"]:+.1f} %' if row.get('relax', True) else 'MP cell (layered)'


def report(rows: dict, refs: dict, pools: list[int]) -> str:
    lines = [
        '| material | formula | pools | ε∞ QE | ε∞ MP | ε_ion QE | ε_ion MP | ΔV/V vs MP | QE wall (s) |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for key, row in rows.items():
        material, pool = key.rsplit('/nk', 1)
        ref = refs[material]
        formula = ref['structure'].composition.reduced_formula
        if row['exit_status'] != 0:
            lines.append(
                f'| {material} | {formula} | {pool} | failed: {row["exit_status"]} {row.get("exit_message", "")} | | | | | |'
            )
            continue
        lines.append(
            f'| {material} | {formula} | {pool} | {row["diel_elec"]:.2f} | {ref["diel_elec"]:.2f} | '
            f'{row["diel_ionic"]:.2f} | {ref["diel_ionic"]:.2f} | {volume_column(row)} | '
            f'{row["qe_wall_seconds"]:.0f} |'
        )
    for pool in pools:
        done = {key.rsplit('/nk', 1)[0]: row for key, row in rows.items() if key.endswith(f'/nk{pool}')}
        finished = {material: row for material, row in done.items() if row['exit_status'] == 0}
        summary = f'\n-nk {pool}: finished {len(finished)}/{len(done)}'
        if finished:
            elec = statistics.median(relative_error(r, refs[m], 'diel_elec') for m, r in finished.items())
            ionic = statistics.median(relative_error(r, refs[m], 'diel_ionic') for m, r in finished.items())
            summary += f'; median |relative error| ε∞ {100 * elec:.1f} %, ε_ion {100 * ionic:.1f} %'
        lines.append(summary)
    if len(pools) > 1:
        walls = {
            pool: sum(r['qe_wall_seconds'] for k, r in rows.items() if k.endswith(f'/nk{pool}'))
            for pool in pools
        }
        base = walls[pools[0]]
        lines.append(
            '\nQE wall time ' + ', '.join(f'-nk {p}: {w:.0f} s ({w / base:.2f}×)' for p, w in walls.items())
        )
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--protocol', default='moderate', choices=('fast', 'moderate', 'precise'))
    parser.add_argument('--materials', nargs='+', default=list(MATERIALS), help='Petousis material ids.')
    parser.add_argument(
        '--no-relax',
        dest='relax',
        action='store_false',
        help='DFPT on the MP cell as it is (always for LAYERED).',
    )
    parser.add_argument('--mpi', type=int, default=2, help='MPI ranks per run.')
    parser.add_argument(
        '--pools',
        type=int,
        nargs='+',
        default=[2],
        help='k-point pools (-nk; default 2, as the protocols); several to compare.',
    )
    parser.add_argument(
        '--output', type=pathlib.Path, help='JSON file for the results (rewritten after each run).'
    )
    arguments = parser.parse_args()

    os.environ.setdefault('AIIDA_PATH', tempfile.mkdtemp(prefix='aiida-bench-dfpt-'))
    refs = references(arguments.materials)
    codes = prepare_profile()
    rows = {}
    for material in arguments.materials:
        for pools in arguments.pools:
            relax = arguments.relax and material not in LAYERED
            rows[f'{material}/nk{pools}'] = run_one(
                refs[material], codes, arguments.protocol, relax, arguments.mpi, pools
            )
            print(f'{material} -nk {pools}: {rows[f"{material}/nk{pools}"]}', file=sys.stderr, flush=True)
            if arguments.output:
                arguments.output.write_text(
                    json.dumps({'protocol': arguments.protocol, 'rows': rows}, indent=1)
                )
    print(f'protocol {arguments.protocol}, relax {arguments.relax}, {arguments.mpi} MPI ranks\n')
    print(report(rows, refs, arguments.pools))


if __name__ == '__main__':
    main()
