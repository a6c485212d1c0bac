"""``dielectrics.dfpt.qe``: static permittivity, Born charges and Γ phonons with Quantum ESPRESSO.

After the common steps of :class:`~aiida_dielectrics.workflows.dfpt.common.DfptWorkChain` (symmetrise,
vc-relax with ``PwRelaxWorkChain``): an scf with fixed occupations and empty bands (``PwBaseWorkChain``),
ph.x at Γ with ``epsil`` (:class:`~.ph.DielectricPhWorkChain`, aiida-quantumespresso's
``PhBaseWorkChain`` with restart handlers for the failures real cells show), then the calcfunction
:func:`dielectric_from_ph` that turns ph.x's ε∞, Born charges and force constants into a
``DielectricData`` (the ionic part by :mod:`aiida_dielectrics.science.phonons`). A pseudo family without
an element of the structure is refused at submission; an odd electron count or a metal after the scf end
the chain before ph.x.
"""

from __future__ import annotations

import contextlib
import pathlib
from typing import ClassVar

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, calcfunction
from aiida_pseudo.groups.family import PseudoPotentialFamily
from aiida_pseudo.groups.mixins import RecommendedCutoffMixin
from aiida_quantumespresso.common.types import ElectronicType
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain
from aiida_quantumespresso.workflows.pw.relax import PwRelaxWorkChain

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.science import phonons
from aiida_dielectrics.workflows.dfpt.common import DfptWorkChain, validate_dfpt_inputs
from aiida_dielectrics.workflows.dfpt.qe.ph import DielectricPhWorkChain

ANGSTROM_TO_BOHR = 1 / phonons.BOHR_TO_ANG
DYN_MAT_FOLDER = 'DYN_MAT'


def band_gap(bands: orm.BandsData, num_electrons: float) -> float | None:
    """Indirect band gap (eV) of a spin-unpolarised fixed-occupation run; ``None`` without an empty band."""
    energies = np.asarray(bands.get_bands())
    energies = energies.reshape(-1, energies.shape[-1])  # spin channels stacked as extra k points
    num_occupied = round(num_electrons / 2)
    if energies.shape[1] <= num_occupied:
        return None
    return float(energies[:, num_occupied].min() - energies[:, num_occupied - 1].max())


def read_gamma_dyn(retrieved: orm.FolderData) -> phonons.DynFile | None:
    """The Γ dynamical matrix of a ph.x run with ε∞ and Born charges, or ``None`` if it lacks them."""
    try:
        names = retrieved.base.repository.list_object_names(DYN_MAT_FOLDER)
    except (FileNotFoundError, NotADirectoryError):
        return None
    for name in sorted(names):
        if not name.startswith('dynamical-matrix-') or name.endswith('.freq'):
            continue
        text = retrieved.base.repository.get_object_content(f'{DYN_MAT_FOLDER}/{name}')
        if 'Dynamical matrix file' not in text:
            continue  # dynamical-matrix-0 is the list of q points
        dyn = phonons.read_dyn_file(text)
        if (
            np.allclose(dyn.q_point, 0)
            and dyn.epsilon_electronic is not None
            and dyn.born_charges is not None
        ):
            return dyn
    return None


@calcfunction
def dielectric_from_ph(
    structure: orm.StructureData,
    scf_parameters: orm.Dict,
    scf_bands: orm.BandsData,
    ph_retrieved: orm.FolderData,
) -> DielectricData:
    """ε∞ and Born charges from ph.x, ε_ion from the Γ force constants, the gap from the scf.

    The sum rules are imposed here (see :func:`aiida_dielectrics.science.phonons.gamma_dielectric`); the node
    keeps ``dynamically_stable``, ``born_charge_neutrality_violation`` (e, before the correction) and the
    mode ``oscillator_strengths`` (e²/m_e) next to the contract's arrays.
    """
    dyn = read_gamma_dyn(ph_retrieved)
    if dyn is None:
        raise ValueError(
            'the ph.x outputs hold no Γ dynamical matrix with dielectric tensor and Born charges'
        )
    volume = structure.get_cell_volume() * ANGSTROM_TO_BOHR**3
    result = phonons.gamma_dielectric(dyn.force_constants.real, dyn.masses, dyn.born_charges, volume)
    gap = band_gap(scf_bands, scf_parameters['number_of_electrons'])
    if gap is None:
        raise ValueError('the scf bands hold no empty band, so they give no band gap')
    dielectric = DielectricData(
        epsilon_electronic=dyn.epsilon_electronic,
        epsilon_ionic=result.epsilon_ionic,
        band_gap=max(gap, 0.0),
        engine='qe',
        structure=structure,
        born_charges=result.born_charges,
        phonon_frequencies_gamma=np.where(result.acoustic, 0.0, result.frequencies),  # sum rule: exactly 0
    )
    dielectric.set_array('oscillator_strengths', result.oscillator_strengths)
    dielectric.base.attributes.set_many(
        {
            'dynamically_stable': result.dynamically_stable,
            'born_charge_neutrality_violation': result.born_charge_neutrality_violation,
            'imaginary_tolerance_cm1': phonons.IMAGINARY_TOLERANCE_CM1,
        }
    )
    return dielectric


def k_point_pools(wanted: int, options: dict) -> int:
    """The most k-point pools up to ``wanted`` that divide the run's MPI ranks (1 without MPI)."""
    resources = options.get('resources', {})
    ranks = resources.get('num_machines', 1) * resources.get('num_mpiprocs_per_machine', 1)
    if not options.get('withmpi', True):
        ranks = 1
    return max(pools for pools in range(1, wanted + 1) if ranks % pools == 0)


def installed_family(label: str):
    """The aiida-pseudo family ``label``, or ``None``."""
    return orm.QueryBuilder().append(PseudoPotentialFamily, filters={'label': label}).first(flat=True)


def validate_qe_inputs(inputs, ctx):
    """The common structure checks, and a pseudo family that has every element of the structure."""
    problem = validate_dfpt_inputs(inputs, ctx)
    if problem or 'structure' not in inputs or 'pseudo_family' not in inputs:
        return problem
    label = inputs['pseudo_family'].value
    family = installed_family(label)
    if family is None:
        return f'pseudo family `{label}` is not installed (see `aiida-pseudo install`)'
    missing = sorted({kind.symbol for kind in inputs['structure'].kinds} - set(family.elements))
    if missing:
        return f'the pseudo family `{label}` has no pseudo for {", ".join(missing)}'
    return None


class DfptQeWorkChain(DfptWorkChain):
    """Symmetrise, vc-relax, scf and ph.x at Γ with Quantum ESPRESSO; outputs ``dielectric`` and ``structure``."""

    CODES: ClassVar[dict[str, str | None]] = {'pw': 'pw@localhost', 'ph': 'ph@localhost'}
    DEFAULT_POTENTIAL_FAMILY = 'PseudoDojo/0.4/PBE/SR/standard/upf'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            'pseudo_family',
            valid_type=orm.Str,
            help='Label of an installed aiida-pseudo family: the pseudos of every pw.x run come from it.',
        )
        spec.input(
            'num_empty_bands',
            valid_type=orm.Int,
            default=lambda: orm.Int(4),
            help='Empty bands above the occupied ones in the scf, so that it reports the gap.',
        )
        spec.input('clean_workdir', valid_type=orm.Bool, default=lambda: orm.Bool(False))
        spec.expose_inputs(
            PwRelaxWorkChain,
            namespace='relax',
            exclude=('clean_workdir', 'structure', 'base_relax.pw.pseudos', 'base_init_relax.pw.pseudos'),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'Inputs of the vc-relax; without them the (symmetrised) input structure is used as is.',
            },
        )
        spec.expose_inputs(
            PwBaseWorkChain,
            namespace='scf',
            exclude=('clean_workdir', 'pw.structure', 'pw.parent_folder', 'pw.pseudos'),
            namespace_options={'help': 'Inputs of the scf; occupations must be fixed (ph.x refuses metals).'},
        )
        spec.expose_inputs(
            DielectricPhWorkChain,
            namespace='ph',
            exclude=(
                'clean_workdir',
                'ph.parent_folder',
                'qpoints',
                'qpoints_distance',
                'qpoints_force_parity',
                'only_initialization',
            ),
            namespace_options={'help': 'Inputs of ph.x, run at Γ with `epsil = .true.`.'},
        )
        spec.inputs.validator = validate_qe_inputs
        spec.exit_code(402, 'ERROR_SUB_PROCESS_FAILED_SCF', message='The scf ({process}) failed.')

    @classmethod
    def dfpt_steps(cls):
        return (cls.run_scf, cls.inspect_scf, cls.run_ph, cls.inspect_ph)

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return pathlib.Path(__file__).parent / 'protocol.yaml'

    @classmethod
    def fill_builder(cls, builder, inputs, codes, potential_family, relax, options):
        """pw.x and ph.x inputs (protocols ``fast``, ``moderate``, ``precise``; codes ``pw``, ``ph``).

        Cutoffs are the family's recommended ones at the protocol's stringency when it has them for every
        element of the structure, else the protocol's ``ecutwfc``/``ecutrho``.
        """
        structure = builder.structure
        family = installed_family(potential_family)
        if family is None:
            raise ValueError(
                f'pseudo family `{potential_family}` is not installed (see `aiida-pseudo install`)'
            )

        ecutwfc, ecutrho = inputs['ecutwfc'], inputs['ecutrho']
        elements = {kind.symbol for kind in structure.kinds}
        if isinstance(family, RecommendedCutoffMixin) and elements <= set(family.elements):
            # a family without cutoffs at this stringency raises: the protocol's values apply
            with contextlib.suppress(ValueError):
                ecutwfc, ecutrho = family.get_recommended_cutoffs(
                    elements=tuple(elements), stringency=inputs['cutoff_stringency'], unit='Ry'
                )
        system = {'ecutwfc': ecutwfc, 'ecutrho': ecutrho}
        electrons = {'conv_thr': inputs['conv_thr_per_atom'] * len(structure.sites)}
        scf_options = cls.job_options(inputs['scf']['pw'], options, codes['pw'])
        pools = k_point_pools(inputs['pools'], scf_options)
        parallelization = {'npool': pools} if pools > 1 else {}  # pw.x; ph.x takes it on its command line

        builder.pseudo_family = orm.Str(family.label)
        builder.num_empty_bands = orm.Int(inputs['num_empty_bands'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])

        scf = inputs['scf']
        scf['pw']['parameters'] = recursive_merge(
            scf['pw']['parameters'], {'SYSTEM': system, 'ELECTRONS': electrons}
        )
        builder.scf.pw.code = codes['pw']
        builder.scf.pw.parameters = orm.Dict(scf['pw']['parameters'])
        builder.scf.pw.metadata.options = scf_options
        if parallelization:
            builder.scf.pw.parallelization = orm.Dict(parallelization)
        builder.scf.kpoints_distance = orm.Float(scf['kpoints_distance'])
        builder.scf.max_iterations = orm.Int(scf['max_iterations'])

        ph = inputs['ph']
        builder.ph.ph.code = codes['ph']
        builder.ph.ph.parameters = orm.Dict(ph['ph']['parameters'])
        builder.ph.ph.metadata.options = cls.job_options(ph['ph'], options, codes['ph'])
        if parallelization:
            builder.ph.ph.settings = orm.Dict({'cmdline': ['-nk', str(pools)]})
        builder.ph.max_iterations = orm.Int(ph['max_iterations'])

        if relax:
            pw = {
                'parameters': {'SYSTEM': system},
                **({'parallelization': parallelization} if parallelization else {}),
            }
            builder.relax = cls.relax_builder(codes['pw'], structure, inputs, family.label, pw, options)

    @classmethod
    def job_options(cls, calculation: dict, options: dict | None, code) -> dict:
        """The protocol's scheduler options of one calculation with the caller's ``options`` on top."""
        merged = recursive_merge(calculation['metadata']['options'], options or {})
        return cls.set_default_resources(merged, code.computer.scheduler_type)

    @classmethod
    def relax_builder(cls, code_pw, structure, inputs: dict, family: str, pw: dict, options):
        """aiida-quantumespresso's vc-relax at the protocol's ``relax.protocol`` with the scf's cutoffs,
        k points and command line (``pw``)."""
        base = {'pseudo_family': family, 'kpoints_distance': inputs['scf']['kpoints_distance'], 'pw': pw}
        relax_builder = PwRelaxWorkChain.get_builder_from_protocol(
            code_pw,
            structure,
            protocol=inputs['relax']['protocol'],
            overrides={'base_relax': base, 'base_init_relax': base},
            electronic_type=ElectronicType.INSULATOR,
            options=options,
        )
        relax_builder.pop('structure', None)
        relax_builder.pop('clean_workdir', None)
        if not inputs['relax']['initial_relax']:
            relax_builder.pop('base_init_relax', None)
        for namespace in ('base_relax', 'base_init_relax'):
            if namespace in relax_builder:
                relax_builder[namespace].pw.pop('pseudos', None)
        return relax_builder

    def validate_engine_inputs(self):
        """The family's pseudos for the structure; an odd electron count is a metal."""
        family = installed_family(self.inputs.pseudo_family.value)
        self.ctx.pseudos = family.get_pseudos(structure=self.ctx.structure)
        valence = {kind: pseudo.z_valence for kind, pseudo in self.ctx.pseudos.items()}
        self.ctx.num_electrons = sum(valence[site.kind_name] for site in self.ctx.structure.sites)
        if self.ctx.num_electrons % 2:
            reason = f'{self.ctx.num_electrons} valence electrons per cell leave a band half filled'
            return self.exit_codes.ERROR_METAL.format(reason=reason)

    def run_relax(self):
        inputs = AttributeDict(self.exposed_inputs(PwRelaxWorkChain, namespace='relax'))
        inputs.structure = self.ctx.structure
        for namespace in ('base_relax', 'base_init_relax'):
            if namespace in inputs:
                inputs[namespace].pw.pseudos = self.ctx.pseudos
        inputs.metadata.call_link_label = 'relax'
        node = self.submit(PwRelaxWorkChain, **inputs)
        self.report(f'launching PwRelaxWorkChain<{node.pk}> (vc-relax)')
        return ToContext(workchain_relax=node)

    def inspect_relax(self):
        node = self.ctx.workchain_relax
        if failure := self.failed(node, 'ERROR_SUB_PROCESS_FAILED_RELAX', 'PwRelaxWorkChain'):
            return failure
        before, self.ctx.structure = self.ctx.structure, node.outputs.output_structure
        change = self.ctx.structure.get_cell_volume() / before.get_cell_volume() - 1
        self.report(f'vc-relax changed the volume by {100 * change:+.2f} %')

    def run_scf(self):
        inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='scf'))
        inputs.pw.structure = self.ctx.structure
        inputs.pw.pseudos = self.ctx.pseudos
        parameters = inputs.pw.parameters.get_dict()
        system = parameters.setdefault('SYSTEM', {})
        system.setdefault('occupations', 'fixed')
        system.setdefault('nbnd', round(self.ctx.num_electrons / 2) + self.inputs.num_empty_bands.value)
        inputs.pw.parameters = orm.Dict(parameters)
        inputs.metadata.call_link_label = 'scf'
        node = self.submit(PwBaseWorkChain, **inputs)
        self.report(f'launching PwBaseWorkChain<{node.pk}> (scf)')
        return ToContext(workchain_scf=node)

    def inspect_scf(self):
        """A failed scf or a metal (no gap, or smeared occupations) ends the chain before ph.x."""
        node = self.ctx.workchain_scf
        if failure := self.failed(node, 'ERROR_SUB_PROCESS_FAILED_SCF', 'PwBaseWorkChain'):
            return failure
        occupations = node.inputs.pw.parameters.get_dict()['SYSTEM']['occupations']
        if occupations != 'fixed':
            return self.exit_codes.ERROR_METAL.format(reason=f'scf ran with occupations `{occupations}`')
        gap = band_gap(node.outputs.output_band, node.outputs.output_parameters['number_of_electrons'])
        if gap is None or gap < self.inputs.min_band_gap.value:
            reason = 'no empty band in the scf' if gap is None else f'scf band gap {gap:.3f} eV'
            return self.exit_codes.ERROR_METAL.format(reason=reason)
        self.report(f'scf band gap {gap:.3f} eV')

    def run_ph(self):
        inputs = AttributeDict(self.exposed_inputs(DielectricPhWorkChain, namespace='ph'))
        inputs.ph.parent_folder = self.ctx.workchain_scf.outputs.remote_folder
        parameters = inputs.ph.parameters.get_dict()
        parameters.setdefault('INPUTPH', {})['epsil'] = True
        inputs.ph.parameters = orm.Dict(parameters)
        qpoints = orm.KpointsData()
        qpoints.set_kpoints_mesh([1, 1, 1])  # Γ only
        inputs.qpoints = qpoints
        inputs.metadata.call_link_label = 'ph'
        node = self.submit(DielectricPhWorkChain, **inputs)
        self.report(f'launching DielectricPhWorkChain<{node.pk}> at Γ')
        return ToContext(workchain_ph=node)

    def inspect_ph(self):
        node = self.ctx.workchain_ph
        if failure := self.failed(node, 'ERROR_SUB_PROCESS_FAILED_DFPT', 'DielectricPhWorkChain'):
            return failure
        if 'retrieved' not in node.outputs or read_gamma_dyn(node.outputs.retrieved) is None:
            return self.exit_codes.ERROR_MISSING_DIELECTRIC_OUTPUT.format(
                reason='ph.x wrote no Γ dynamical matrix with dielectric tensor and Born charges'
            )

    def dielectric(self) -> DielectricData:
        scf = self.ctx.workchain_scf.outputs
        return dielectric_from_ph(
            structure=self.ctx.structure,
            scf_parameters=scf.output_parameters,
            scf_bands=scf.output_band,
            ph_retrieved=self.ctx.workchain_ph.outputs.retrieved,
        )

    def on_terminated(self):
        """Clean the remote work directories of the calculations this chain ran, when asked to."""
        super().on_terminated()
        if not self.inputs.clean_workdir.value:
            return
        cleaned = []
        for called in self.node.called_descendants:
            if isinstance(called, orm.CalcJobNode):
                try:
                    called.outputs.remote_folder._clean()
                    cleaned.append(str(called.pk))
                except (OSError, KeyError):
                    pass
        if cleaned:
            self.report(f'cleaned remote folders of calculations: {" ".join(cleaned)}')
