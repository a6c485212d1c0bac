"""How well and how fast a universal potential relaxes perturbed DFT structures (no AiiDA profile).

Petousis et al. (2017) structures (MP PBE relaxations) with at most ``--max-atoms`` atoms, a seeded
sample of ``--count``, are strained +5 % in volume and rattled (0.03 Å normal displacements per
Cartesian component, as ``ase.Atoms.rattle``), then relaxed (FIRE + FrechetCellFilter to fmax
0.05 eV/Å). The figure of merit is |V_relaxed / V_DFT − 1|: how close the potential brings the cell
back to DFT's. Prints one JSON line; ``--output`` appends each structure's result as it is done, and
a rerun with the same file relaxes only the rest (runs of a few minutes on a shared machine). Wall
time depends on the machine's load; the CPU time per structure (all threads) much less.

    OMP_NUM_THREADS=2 python benchmarks/bench_relax.py --potential sevennet-0 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np
from tqdm import tqdm

from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows

SHARED = pathlib.Path(
    os.environ.get('AIIDA_DIELECTRICS_SHARED', pathlib.Path(__file__).parents[1] / '..' / 'shared')
)
CSV = SHARED / 'data' / 'petousis2017' / 'dielectric_constant.csv'


def sample(count: int, max_atoms: int, seed: int) -> list[Row]:
    """``count`` rows with at most ``max_atoms`` atoms, drawn with ``seed`` (sorted by material id)."""
    rows = sorted(
        (row for row in read_rows(CSV) if isinstance(row, Row) and len(row.structure) <= max_atoms),
        key=lambda row: row.material_id,
    )
    chosen = np.random.default_rng(seed).choice(len(rows), size=min(count, len(rows)), replace=False)
    return [rows[index] for index in sorted(chosen)]


def perturb(structure, seed: int, strain: float = 0.05, rattle: float = 0.03):
    """``structure`` with its volume ×(1 + strain) and every atom displaced by N(0, rattle²) per axis."""
    perturbed = structure.copy()
    perturbed.scale_lattice(structure.volume * (1 + strain))
    displacements = np.random.default_rng(seed).normal(0, rattle, (len(structure), 3))
    for index, vector in enumerate(displacements):
        perturbed.translate_sites([index], vector, frac_coords=False, to_unit_cell=True)
    return perturbed


def main() -> None:
    from aiida_dielectrics.science import relax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', default=relax.DEFAULT_POTENTIAL, choices=sorted(relax.POTENTIALS))
    parser.add_argument('--count', type=int, default=50)
    parser.add_argument('--max-atoms', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--output', type=pathlib.Path, help='JSON-lines file of per-structure results; a rerun continues it'
    )
    arguments = parser.parse_args()

    rows = sample(arguments.count, arguments.max_atoms, arguments.seed)
    done = load_records(arguments.output, arguments.potential)
    start = time.perf_counter()
    relaxer = relax.Relaxer(arguments.potential, threads=arguments.threads)
    load_seconds = time.perf_counter() - start
    records = []
    for index, row in enumerate(tqdm(rows, desc=arguments.potential, file=sys.stderr)):
        if row.material_id in done:
            records.append(done[row.material_id])
            continue
        cpu = time.process_time()
        result = relaxer.relax_one(perturb(row.structure, arguments.seed + index))
        change = np.nan if result.structure is None else result.structure.volume / row.structure.volume - 1
        record = {
            'potential': arguments.potential,
            'material_id': row.material_id,
            'formula': row.structure.composition.reduced_formula,
            'atoms': len(row.structure),
            'volume_vs_dft': None if np.isnan(change) else float(change),
            'steps': result.steps,
            'converged': result.converged,
            'seconds': result.seconds,
            'cpu_seconds': time.process_time() - cpu,
            'load_average': os.getloadavg()[0],
            'reason': result.reason,
        }
        records.append(record)
        if arguments.output:
            with arguments.output.open('a') as handle:
                handle.write(json.dumps(record) + '\n')
    changes = np.abs([record['volume_vs_dft'] for record in records if record['volume_vs_dft'] is not None])
    summary = {
        'potential': relaxer.potential.version,
        'structures': len(records),
        'max_atoms': arguments.max_atoms,
        'threads': arguments.threads,
        'converged': sum(record['converged'] for record in records),
        'failed': {record['material_id']: record['reason'] for record in records if record['reason']},
        'median_abs_dV_percent': round(100 * float(np.median(changes)), 2),
        'p90_abs_dV_percent': round(100 * float(np.percentile(changes, 90)), 2),
        'seconds_per_structure': round(float(np.mean([record['seconds'] for record in records])), 2),
        'cpu_seconds_per_structure': round(float(np.mean([record['cpu_seconds'] for record in records])), 2),
        'median_steps': float(np.median([record['steps'] for record in records])),
        'load_seconds': round(load_seconds, 1),
        'mean_load_average': round(float(np.mean([record['load_average'] for record in records])), 2),
    }
    print(json.dumps(summary))


def load_records(path: pathlib.Path | None, potential: str) -> dict[str, dict]:
    """Structures already relaxed with ``potential`` into ``path`` (JSON lines): a run continues them."""
    if path is None or not path.exists():
        return {}
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {record['material_id']: record for record in records if record['potential'] == potential}


if __name__ == '__main__':
    main()
