"""Submit a small real screening campaign to the daemon: `verdi run examples/submit_screening.py`.

Seeds → element substitution (pymatgen's ICSD probabilities) → the funnel: stage 1, GNN predictions
(MEGNet E_form, the packaged band-gap and ε ensembles) on every candidate and the best --relax-count by
Φ_adj; stage 2, those relaxed with a universal potential (SevenNet-0 by default), E_hull against the
default hull (or --hull-entries) and the GNNs again; stage 3, DFPT with Quantum ESPRESSO of the best
--verify with E_hull < 0.1 eV/atom. The relaxed predictions and DFPT results land in the group
`campaign` (override with --group), the stage-1 predictions in `campaign/stage-1`; with --wait the script
follows the campaign until it ends and prints every stage. With --candidates-group LABEL the campaign
screens a stored group of structures instead of generating substitution candidates. The GNNs run in shards
of --shard-size structures, --concurrent-shards at a time: in the daemon, spread over its workers; with
--predict-code LABEL (a code for the Python of an environment with aiida-dielectrics, e.g. on a GPU node)
every shard is a `dielectrics.predict` job on that code's computer instead, with --predict-options (JSON:
the jobs' scheduler options).

Models: E_form and band gap load from $AIIDA_DIELECTRICS_MODEL_DIR when it holds them (offline),
otherwise from Hugging Face. Codes and pseudos come from `aiida-dielectrics setup`.
"""

import argparse
import json
import time

from aiida import orm
from aiida.engine import submit
from pymatgen.core import Lattice, Structure
from tqdm import tqdm

from aiida_dielectrics.calculations.candidates import generate_candidates
from aiida_dielectrics.calculations.predictions import model_node
from aiida_dielectrics.ml.loading import DEFAULT_MODEL_NAMES, resolve
from aiida_dielectrics.science.relax import DEFAULT_POTENTIAL, POTENTIALS
from aiida_dielectrics.tools.provenance import run_in_bulk
from aiida_dielectrics.tools.query import campaign_predictions
from aiida_dielectrics.workflows.screening import ScreeningWorkChain

#: 3d cations with open shells in their usual oxidation states, and the lanthanides.
OPEN_SHELL = {'Ti', 'V', 'Cr', 'Mn', 'Fe', 'Co', 'Ni', 'Cu'} | {
    'Ce',
    'Pr',
    'Nd',
    'Pm',
    'Sm',
    'Eu',
    'Gd',
    'Tb',
    'Dy',
    'Ho',
    'Er',
    'Tm',
    'Yb',
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--group', default='campaign', help='Group for predictions and DFPT results.')
parser.add_argument('--max-candidates', type=int, default=12, help='Substitution candidates to generate.')
parser.add_argument('--relax-count', type=int, default=6, help='How many to relax (stage 2).')
parser.add_argument('--potential', default=DEFAULT_POTENTIAL, choices=tuple(POTENTIALS))
parser.add_argument('--hull-entries', help='JSON file of pymatgen entries for the hull (default: offline).')
parser.add_argument('--verify', type=int, default=2, help='How many to verify by DFPT.')
parser.add_argument('--pseudo-family', default='PseudoDojo/0.4/PBE/SR/standard/upf')
parser.add_argument('--protocol', default='fast', choices=('fast', 'moderate', 'precise'))
parser.add_argument('--mpi', type=int, default=2, help='MPI ranks per DFPT job.')
parser.add_argument('--wait', action='store_true', help='Follow the campaign until it ends.')
parser.add_argument('--candidates-group', help='Screen this group of StructureData instead of substitutions.')
parser.add_argument('--shard-size', type=int, default=64, help='Structures per shard.')
parser.add_argument(
    '--concurrent-shards',
    type=int,
    default=4,
    help='Shards at a time (over the daemon workers, or jobs with --predict-code).',
)
parser.add_argument(
    '--predict-code', help='Run the predictions as jobs with this code (e.g. python-gpu@cluster).'
)
parser.add_argument(
    '--predict-options',
    type=json.loads,
    help='Scheduler options of the prediction jobs, as JSON (with --predict-code).',
)
arguments = parser.parse_args()

if arguments.candidates_group is None:
    # Seed: rocksalt MgS. Substitution explores nearby chalcogenides and halides of the same prototype.
    seed = Structure.from_spacegroup('Fm-3m', Lattice.cubic(5.20), ['Mg', 'S'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    generated, _ = run_in_bulk(
        generate_candidates,
        parameters=orm.Dict({'threshold': 1e-3, 'max_candidates': arguments.max_candidates}),
        MgS=orm.StructureData(pymatgen=seed.get_primitive_structure()),
    )
    report = generated['report'].get_dict()['candidates']
    # The QE protocols run spin-unpolarised with fixed occupations: leave out open-shell (magnetic) cations.
    candidates = {
        key: structure
        for key, structure in generated['structures'].items()
        if not set(structure.get_symbols_set()) & OPEN_SHELL
    }
    print(f'{len(candidates)} candidates: {", ".join(report[key]["formula"] for key in candidates)}')

models = {target: model_node(target, resolve(name)) for target, name in DEFAULT_MODEL_NAMES.items()}
builder = ScreeningWorkChain.get_builder()
if arguments.candidates_group is None:
    builder.candidates = candidates
else:
    builder.candidates_group = orm.Str(arguments.candidates_group)
builder.models = models
builder.inference = {
    'shard_size': orm.Int(arguments.shard_size),
    'max_concurrent': orm.Int(arguments.concurrent_shards),
}
if arguments.predict_code:
    builder.inference.code = orm.load_code(arguments.predict_code)
if arguments.predict_options:  # refused without a code
    builder.inference.options = orm.Dict(arguments.predict_options)
builder.relax_count = orm.Int(arguments.relax_count)
builder.relaxation = {'potential': orm.Str(arguments.potential)}
if arguments.hull_entries:
    builder.hull_entries = orm.SinglefileData(arguments.hull_entries)
builder.num_verify = orm.Int(arguments.verify)
builder.max_concurrent = orm.Int(1)  # one DFPT job at a time uses both cores of a laptop
builder.campaign_group = orm.Str(arguments.group)
builder.dfpt = {
    'engine': orm.Str('qe'),
    'protocol': orm.Str(arguments.protocol),
    'potential_family': orm.Str(arguments.pseudo_family),
    'codes': {'pw': orm.load_code('pw@localhost'), 'ph': orm.load_code('ph@localhost')},
    'options': orm.Dict({'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': arguments.mpi}}),
}
node = submit(builder)
orm.Group.collection.get_or_create(label=arguments.group)[0].add_nodes([node])
print(f'Submitted ScreeningWorkChain<{node.pk}>; follow it with `verdi process status {node.pk}`.')

if arguments.wait:
    dfpt_children = 'dielectrics.dfpt.qe'
    with tqdm(total=arguments.verify, desc='DFPT verifications', unit=' run', disable=None) as progress:
        while not node.is_terminated:
            done = sum(
                child.is_terminated for child in node.called if dfpt_children in (child.process_type or '')
            )
            progress.update(done - progress.n)
            time.sleep(5)
    if not node.is_finished_ok:
        raise SystemExit(f'Campaign failed: [{node.exit_status}] {node.exit_message}')
    summary = node.outputs.summary.get_dict()
    first, second = summary['stages']['predict'], summary['stages']['relax']
    print(
        f'Stage 1: {first["predicted"]} of {first["candidates"]} predicted, {first["passed_filters"]} pass the '
        f'loose filters, {first["selected"]} relaxed.'
    )
    print(
        f'Stage 2: {second["relaxed"]} relaxed, E_hull of {second["with_e_above_hull"]} against the '
        f'{summary["hull_source"]} hull, {second["passed_filters"]} pass the filters:'
    )
    for key, prediction in sorted(
        campaign_predictions(node, stage=2).items(), key=lambda item: -item[1].fom_adj
    ):
        hull = '   n/a' if prediction.e_above_hull is None else f'{prediction.e_above_hull:+.3f}'
        print(f'  {prediction.formula:8s} E_hull {hull} eV/atom, Φ_adj {prediction.fom_adj:6.1f} eV ({key})')
    print(
        f'Stage 3: verified {summary["verified"]} of {summary["selected"]} selected; hits {summary["hits"]}.'
    )
    for row in summary['results']:
        print(
            f'  {row["formula"]:8s} E_hull {row["e_above_hull"]:+.3f}, Φ ML {row["fom_ml"]:7.1f} eV → '
            f'DFPT {row["fom_dfpt"]:7.1f} eV '
            f'(ε {row["diel_total_ml"]:.1f} → {row["diel_total_dfpt"]:.1f}, gap {row["band_gap_ml"]:.2f} → '
            f'{row["band_gap_dfpt"]:.2f} eV)'
        )
print(f'Query: aiida-dielectrics query --kind prediction --group {arguments.group}')
print(f'Plot:  aiida-dielectrics plot --group {arguments.group} --output pareto.html')
print(f'Share: aiida-dielectrics export {arguments.group} --output {arguments.group}.aiida')
