"""The offline default hull against known structures: are DFT ground states on it, and polymorphs above?

Binary chemical systems of the Petousis et al. (2017) data (MP PBE ground states or near them) are drawn
with ``--seed`` until they hold ``--count`` structures of at most ``--max-atoms`` atoms; Zn–S, Cd–S and
Cd–Se are always in. Their elements' reference states (:mod:`aiida_dielectrics.science.references`) and
the known structures are relaxed with one potential and make the default hull
(:func:`~aiida_dielectrics.science.references.hull_rows`, MP2020 scale). Reported: the share of known
structures within 0.05 and 0.1 eV/atom of it, E_hull of rocksalt ZnS, CdS and CdSe (high-pressure
polymorphs: they should sit above it), and each element reference against MP's own (the GGA energy
of MP's lowest elemental entry, from Matbench Discovery's ``2023-02-07-mp-elemental-reference-entries.json``).
Everything runs in this process without an AiiDA profile; prints one JSON line. ``--cache`` keeps every
relaxation as it is done, and a rerun with the same file continues (runs of a few minutes each).

    OMP_NUM_THREADS=2 python benchmarks/bench_hull.py --potential sevennet-0 --threads 2
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys
import time

import numpy as np
from bench_relax import CSV
from pymatgen.core import Lattice, Structure
from tqdm import tqdm

from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows

#: MP's elemental reference energies (eV/atom, GGA, uncorrected): energy / atoms of each element's
#: lowest entry in matbench-discovery ``data/mp/2023-02-07-mp-elemental-reference-entries.json``.
MP_ENERGY_AND_ATOMS = {
    'H': (-13.57090418, 4), 'Li': (-5.7267686, 3), 'Be': (-7.47882573, 2), 'B': (-80.15270125, 12),
    'C': (-36.91466197, 4), 'N': (-66.6919594, 8), 'O': (-39.57350969, 8), 'F': (-7.64591587, 4),
    'Na': (-38.35323351, 29), 'Mg': (-1.60028005, 1), 'Al': (-3.74557583, 1), 'Si': (-10.85063606, 2),
    'P': (-227.35870528, 42), 'S': (-132.36639574, 32), 'Cl': (-7.39414664, 4), 'K': (-22.20797894, 20),
    'Ca': (-2.00559988, 1), 'Sc': (-12.66493821, 2), 'Ti': (-23.68647605, 3), 'V': (-9.08390607, 1),
    'Cr': (-19.30609494, 2), 'Mn': (-265.69844347, 29), 'Fe': (-8.47002121, 1), 'Co': (-14.21663559, 2),
    'Ni': (-5.78013668, 1), 'Cu': (-4.09920667, 1), 'Zn': (-2.51948722, 2), 'Ga': (-12.11238409, 4),
    'Ge': (-9.24605571, 2), 'As': (-9.31823681, 2), 'Se': (-223.73833457, 64), 'Br': (-1.55302833, 1),
    'Rb': (-7.84427258, 8), 'Sr': (-5.06848036, 3), 'Y': (-19.39941334, 3), 'Zr': (-17.09540126, 2),
    'Nb': (-10.10130504, 1), 'Mo': (-10.84565011, 1), 'Ru': (-18.54880508, 2), 'Rh': (-7.36430787, 1),
    'Pd': (-5.17988181, 1), 'Ag': (-8.49766801, 3), 'Cd': (-0.92288976, 1), 'In': (-8.25505119, 3),
    'Sn': (-8.01914371, 2), 'Sb': (-8.25800248, 2), 'Te': (-9.42991768, 3), 'I': (-1.47336635, 1),
    'Cs': (-25.96666879, 29), 'Ba': (-1.91897494, 1), 'La': (-19.74402842, 4), 'Hf': (-19.91437806, 2),
    'Ta': (-11.85777763, 1), 'W': (-12.95813023, 1), 'Re': (-24.88905437, 2), 'Os': (-22.45473486, 2),
    'Ir': (-8.83843418, 1), 'Pt': (-6.07113332, 1), 'Au': (-3.273882, 1), 'Hg': (-0.60736073, 2),
    'Tl': (-7.08792944, 3), 'Pb': (-3.71264707, 1), 'Bi': (-3.84048913, 1),
}  # fmt: skip
#: High-pressure rocksalt polymorphs of zincblende/wurtzite compounds: cation, anion, cubic a (Å) to start.
ROCKSALTS = {'ZnS': ('Zn', 'S', 5.06), 'CdS': ('Cd', 'S', 5.44), 'CdSe': ('Cd', 'Se', 5.66)}


def binary_systems(count: int, max_atoms: int, seed: int) -> dict[frozenset, list[Row]]:
    """Binary systems (with their small known structures) drawn until they hold ``count`` structures."""
    systems = collections.defaultdict(list)
    for row in read_rows(CSV):
        if isinstance(row, Row) and len(row.structure) <= max_atoms and len(row.structure.composition) == 2:
            systems[frozenset(element.symbol for element in row.structure.composition)].append(row)
    order = sorted(systems, key=sorted)
    np.random.default_rng(seed).shuffle(order)
    chosen = {frozenset(pair) for pair in (('Zn', 'S'), ('Cd', 'S'), ('Cd', 'Se'))}
    for system in order:
        if sum(len(systems[key]) for key in chosen) >= count:
            break
        chosen.add(system)
    return {system: systems[system] for system in sorted(chosen, key=sorted)}


class Cache:
    """Relaxation records by key in a JSON-lines file, so that a run interrupted (or cut into runs of a
    few minutes on a shared machine) continues where it stopped."""

    def __init__(self, path: pathlib.Path | None, potential: str):
        self.path, self.potential, self.records = path, potential, {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                item = json.loads(line)
                if item['record']['potential'] == potential:
                    self.records[item['key']] = item['record']

    def add(self, key: str, record: dict) -> None:
        self.records[key] = record
        if self.path is not None:
            with self.path.open('a') as handle:
                handle.write(json.dumps({'key': key, 'record': record}) + '\n')


def main() -> None:
    from aiida_dielectrics.science import hull, references, relax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', default=relax.DEFAULT_POTENTIAL, choices=sorted(relax.POTENTIALS))
    parser.add_argument('--count', type=int, default=60)
    parser.add_argument('--max-atoms', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--cache', type=pathlib.Path, help='JSON-lines file of relaxations; a rerun continues it'
    )
    parser.add_argument('--output', type=pathlib.Path, help='JSON file for the per-structure results')
    arguments = parser.parse_args()

    start = time.perf_counter()
    systems = binary_systems(arguments.count, arguments.max_atoms, arguments.seed)
    relaxer = relax.Relaxer(arguments.potential, threads=arguments.threads)
    cache = Cache(arguments.cache, arguments.potential)

    def relaxed(key, structure, fix_cell=False):
        if key not in cache.records:
            cache.add(key, relax.record(relaxer.relax_one(structure, fix_cell), structure, relaxer.potential))
        return cache.records[key]

    elements = references.elements_of(row.structure for rows in systems.values() for row in rows)
    element_records = {
        f'{symbol}_{name}': relaxed(f'{symbol}_{name}', structure, fix_cell)
        for symbol in tqdm(elements, desc='elements', file=sys.stderr)
        for name, (structure, fix_cell) in references.element_trials(symbol).items()
    }
    known = {row.material_id: row for rows in systems.values() for row in rows}
    known_records = {
        key: relaxed(key, row.structure) for key, row in tqdm(known.items(), desc='known', file=sys.stderr)
    }
    content = references.hull_rows(element_records, known_records)
    entries = hull.entries_from_rows(content['entries'])
    kept = [key for key in known_records if key not in content['excluded']]
    values, _ = hull.e_above_hull_many(
        entries,
        [known_records[key]['composition'] for key in kept],
        [known_records[key]['energy_mp'] for key in kept],
        include_candidates=False,  # they are in the hull already: 0 on it, > 0 above
    )
    polymorphs = {}
    for formula, (cation, anion, a) in ROCKSALTS.items():
        cell = Structure.from_spacegroup(
            'Fm-3m', Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]]
        )
        record = relaxed(f'rocksalt {formula}', cell.get_primitive_structure())
        value, _ = hull.e_above_hull_many(
            entries, [cell.composition], [record['energy_mp']], include_candidates=False
        )
        polymorphs[f'rocksalt {formula}'] = round(float(value[0]), 3)
    deviations = {}
    for symbol, key in content['elements'].items():
        energy, atoms = MP_ENERGY_AND_ATOMS[symbol]
        deviations[symbol] = {
            'trial': key,
            'minus_mp': round(element_records[key]['energy'] - energy / atoms, 3),
        }
    absolute = np.abs([item['minus_mp'] for item in deviations.values()])
    summary = {
        'potential': relaxer.potential.version,
        'systems': len(systems),
        'known_structures': len(known_records),
        'excluded': content['excluded'],
        'on_hull': int(np.sum(values <= 1e-6)),
        'share_within_0.05': round(float(np.mean(values <= 0.05)), 3),
        'share_within_0.1': round(float(np.mean(values <= 0.1)), 3),
        'median_e_hull': round(float(np.median(values)), 3),
        'worst': sorted(
            (
                (key, known_records[key]['formula'], round(float(value), 3))
                for key, value in zip(kept, values, strict=True)
            ),
            key=lambda item: -item[2],
        )[:5],
        'polymorphs_e_hull': polymorphs,
        'elements_minus_mp_median_abs': round(float(np.median(absolute)), 3),
        'elements_minus_mp_max_abs': round(float(absolute.max()), 3),
        'minutes_this_run': round((time.perf_counter() - start) / 60, 1),
        'threads': arguments.threads,
    }
    if arguments.output:
        details = {
            'summary': summary,
            'elements': deviations,
            'e_above_hull': {key: round(float(value), 4) for key, value in zip(kept, values, strict=True)},
        }
        arguments.output.write_text(json.dumps(details, indent=1) + '\n')
    print(json.dumps(summary))


if __name__ == '__main__':
    main()
