"""``dielectrics.dfpt.qe``: static permittivity, Born charges and Γ phonons with Quantum ESPRESSO.

Optional vc-relax (``PwRelaxWorkChain``), an scf with fixed occupations and empty bands
(``PwBaseWorkChain``), ph.x at Γ with ``epsil`` (``PhBaseWorkChain``), then the calcfunction
:func:`dielectric_from_ph` that turns ph.x's ε∞, Born charges and force constants into a
``DielectricData`` (the ionic part by :mod:`aiida_dielectrics.science.phonons`). Restarts on non-converged or
out-of-walltime runs are the aiida-quantumespresso base work chains' own handlers; this chain adds the
checks that stop a candidate before anything expensive runs: overlapping atoms, an element the pseudo
family lacks, an odd electron count, and a metal after the scf.
"""

from __future__ import annotations

import contextlib
import pathlib

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_
from aiida_pseudo.groups.family import PseudoPotentialFamily
from aiida_pseudo.groups.mixins import RecommendedCutoffMixin
from aiida_quantumespresso.common.types import ElectronicType
from aiida_quantumespresso.workflows.ph.base import PhBaseWorkChain
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain
from aiida_quantumespresso.workflows.pw.relax import PwRelaxWorkChain

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.science import phonons
from aiida_dielectrics.workflows.dfpt.common import define_dfpt_interface, minimum_distance

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


class DfptQeWorkChain(ProtocolMixin, WorkChain):
    """Relax (optional), scf and ph.x at Γ with Quantum ESPRESSO; outputs ``dielectric`` and ``structure``."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, help='The crystal to compute.')
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
        spec.input(
            'min_band_gap',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.1),
            help='Below this scf band gap (eV) the crystal counts as a metal and ph.x is not run.',
        )
        spec.input('clean_workdir', valid_type=orm.Bool, default=lambda: orm.Bool(False))
        spec.expose_inputs(
            PwRelaxWorkChain,
            namespace='relax',
            exclude=('clean_workdir', 'structure', 'base_relax.pw.pseudos', 'base_init_relax.pw.pseudos'),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'Inputs of the optional vc-relax; without them the input structure is used as is.',
            },
        )
        spec.expose_inputs(
            PwBaseWorkChain,
            namespace='scf',
            exclude=('clean_workdir', 'pw.structure', 'pw.parent_folder', 'pw.pseudos'),
            namespace_options={'help': 'Inputs of the scf; occupations must be fixed (ph.x refuses metals).'},
        )
        spec.expose_inputs(
            PhBaseWorkChain,
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
        spec.outline(
            cls.setup,
            cls.validate_structure,
            if_(cls.should_relax)(cls.run_relax, cls.inspect_relax),
            cls.run_scf,
            cls.inspect_scf,
            cls.run_ph,
            cls.inspect_ph,
            cls.results,
        )
        define_dfpt_interface(
            spec, family_kind='pseudo', potential='pseudo', relax_name='vc-relax PwRelaxWorkChain'
        )
        spec.exit_code(402, 'ERROR_SUB_PROCESS_FAILED_SCF', message='The scf PwBaseWorkChain failed.')
        spec.exit_code(403, 'ERROR_SUB_PROCESS_FAILED_PH', message='The ph.x PhBaseWorkChain failed.')
        spec.exit_code(
            404,
            'ERROR_MISSING_DIELECTRIC_OUTPUT',
            message='ph.x finished but wrote no Γ dynamical matrix with dielectric tensor and Born charges.',
        )

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return pathlib.Path(__file__).parent / 'protocol.yaml'

    @classmethod
    def get_builder_from_protocol(
        cls,
        code_pw,
        code_ph,
        structure: orm.StructureData,
        protocol: str | None = None,
        overrides: dict | None = None,
        pseudo_family: str = 'PseudoDojo/0.4/PBE/SR/standard/upf',
        relax: bool = False,
        options: dict | None = None,
    ):
        """A builder with the protocol's inputs (``fast``, ``moderate``, ``precise``).

        Cutoffs are the family's recommended ones at the protocol's stringency when it has them for every
        element of ``structure``, else the protocol's ``ecutwfc``/``ecutrho``; ``options`` (e.g. resources)
        go to every calculation. ``overrides`` follows the nesting of the protocol file.
        """
        code_pw = orm.load_code(code_pw) if isinstance(code_pw, str) else code_pw
        code_ph = orm.load_code(code_ph) if isinstance(code_ph, str) else code_ph
        inputs = cls.get_protocol_inputs(protocol, overrides)
        family = (
            orm.QueryBuilder()
            .append(PseudoPotentialFamily, filters={'label': pseudo_family})
            .first(flat=True)
        )
        if family is None:
            raise ValueError(f'pseudo family `{pseudo_family}` is not installed (see `aiida-pseudo install`)')

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

        builder = cls.get_builder()
        builder.structure = structure
        builder.pseudo_family = orm.Str(family.label)
        builder.num_empty_bands = orm.Int(inputs['num_empty_bands'])
        builder.min_band_gap = orm.Float(inputs['min_band_gap'])
        builder.min_interatomic_distance = orm.Float(inputs['min_interatomic_distance'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])

        scf = inputs['scf']
        scf['pw']['parameters'] = recursive_merge(
            scf['pw']['parameters'], {'SYSTEM': system, 'ELECTRONS': electrons}
        )
        scf_options = recursive_merge(scf['pw']['metadata']['options'], options or {})
        builder.scf.pw.code = code_pw
        builder.scf.pw.parameters = orm.Dict(scf['pw']['parameters'])
        builder.scf.pw.metadata.options = cls.set_default_resources(
            scf_options, code_pw.computer.scheduler_type
        )
        builder.scf.kpoints_distance = orm.Float(scf['kpoints_distance'])
        builder.scf.max_iterations = orm.Int(scf['max_iterations'])

        ph = inputs['ph']
        ph_options = recursive_merge(ph['ph']['metadata']['options'], options or {})
        builder.ph.ph.code = code_ph
        builder.ph.ph.parameters = orm.Dict(ph['ph']['parameters'])
        builder.ph.ph.metadata.options = cls.set_default_resources(
            ph_options, code_ph.computer.scheduler_type
        )
        builder.ph.max_iterations = orm.Int(ph['max_iterations'])

        if relax:
            base = {
                'pseudo_family': family.label,
                'kpoints_distance': scf['kpoints_distance'],
                'pw': {'parameters': {'SYSTEM': system}},
            }
            relax_overrides = {'base_relax': base, 'base_init_relax': base}
            relax_builder = PwRelaxWorkChain.get_builder_from_protocol(
                code_pw,
                structure,
                protocol=protocol,
                overrides=relax_overrides,
                electronic_type=ElectronicType.INSULATOR,
                options=options,
            )
            relax_builder.pop('structure', None)
            relax_builder.pop('clean_workdir', None)
            for namespace in ('base_relax', 'base_init_relax'):
                if namespace in relax_builder:
                    relax_builder[namespace].pw.pop('pseudos', None)
            builder.relax = relax_builder
        return builder

    def setup(self):
        self.ctx.structure = self.inputs.structure

    def validate_structure(self):
        """Stop before any calculation on overlapping atoms, missing pseudos or an odd electron count."""
        structure = self.inputs.structure
        if structure.get_cell_volume() <= 1e-6:
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(reason='the cell has no volume')
        distance = minimum_distance(structure)
        if distance < self.inputs.min_interatomic_distance.value:
            reason = f'atoms {distance:.3f} Å apart (minimum {self.inputs.min_interatomic_distance.value} Å)'
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(reason=reason)

        label = self.inputs.pseudo_family.value
        family = orm.QueryBuilder().append(PseudoPotentialFamily, filters={'label': label}).first(flat=True)
        if family is None:
            return self.exit_codes.ERROR_UNSUPPORTED_ELEMENT.format(family=label, elements='any element')
        missing = sorted({kind.symbol for kind in structure.kinds} - set(family.elements))
        if missing:
            return self.exit_codes.ERROR_UNSUPPORTED_ELEMENT.format(family=label, elements=', '.join(missing))
        self.ctx.pseudos = family.get_pseudos(structure=structure)

        valence = {kind: pseudo.z_valence for kind, pseudo in self.ctx.pseudos.items()}
        self.ctx.num_electrons = sum(valence[site.kind_name] for site in structure.sites)
        if self.ctx.num_electrons % 2:
            reason = f'{self.ctx.num_electrons} valence electrons per cell leave a band half filled'
            return self.exit_codes.ERROR_METAL.format(reason=reason)

    def should_relax(self):
        return 'relax' in self.inputs

    def run_relax(self):
        inputs = AttributeDict(self.exposed_inputs(PwRelaxWorkChain, namespace='relax'))
        inputs.structure = self.ctx.structure
        for namespace in ('base_relax', 'base_init_relax'):
            if namespace in inputs:
                inputs[namespace].pw.pseudos = self.ctx.pseudos
        inputs.metadata.call_link_label = 'relax'
        node = self.submit(PwRelaxWorkChain, **inputs)
        self.report(f'launching PwRelaxWorkChain<{node.pk}>')
        return ToContext(workchain_relax=node)

    def inspect_relax(self):
        node = self.ctx.workchain_relax
        if not node.is_finished_ok:
            self.report(f'PwRelaxWorkChain<{node.pk}> failed with exit status {node.exit_status}')
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_RELAX
        self.ctx.structure = node.outputs.output_structure

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
        if not node.is_finished_ok:
            self.report(f'PwBaseWorkChain<{node.pk}> failed with exit status {node.exit_status}')
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_SCF
        occupations = node.inputs.pw.parameters.get_dict()['SYSTEM']['occupations']
        if occupations != 'fixed':
            return self.exit_codes.ERROR_METAL.format(reason=f'scf ran with occupations `{occupations}`')
        gap = band_gap(node.outputs.output_band, node.outputs.output_parameters['number_of_electrons'])
        if gap is None or gap < self.inputs.min_band_gap.value:
            reason = 'no empty band in the scf' if gap is None else f'scf band gap {gap:.3f} eV'
            return self.exit_codes.ERROR_METAL.format(reason=reason)
        self.report(f'scf band gap {gap:.3f} eV')

    def run_ph(self):
        inputs = AttributeDict(self.exposed_inputs(PhBaseWorkChain, namespace='ph'))
        inputs.ph.parent_folder = self.ctx.workchain_scf.outputs.remote_folder
        parameters = inputs.ph.parameters.get_dict()
        parameters.setdefault('INPUTPH', {})['epsil'] = True
        inputs.ph.parameters = orm.Dict(parameters)
        qpoints = orm.KpointsData()
        qpoints.set_kpoints_mesh([1, 1, 1])  # Γ only
        inputs.qpoints = qpoints
        inputs.metadata.call_link_label = 'ph'
        node = self.submit(PhBaseWorkChain, **inputs)
        self.report(f'launching PhBaseWorkChain<{node.pk}> at Γ')
        return ToContext(workchain_ph=node)

    def inspect_ph(self):
        node = self.ctx.workchain_ph
        if not node.is_finished_ok:
            self.report(f'PhBaseWorkChain<{node.pk}> failed with exit status {node.exit_status}')
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_PH
        if 'retrieved' not in node.outputs or read_gamma_dyn(node.outputs.retrieved) is None:
            return self.exit_codes.ERROR_MISSING_DIELECTRIC_OUTPUT

    def results(self):
        scf = self.ctx.workchain_scf.outputs
        dielectric = dielectric_from_ph(
            structure=self.ctx.structure,
            scf_parameters=scf.output_parameters,
            scf_bands=scf.output_band,
            ph_retrieved=self.ctx.workchain_ph.outputs.retrieved,
        )
        self.out('dielectric', dielectric)
        self.out('structure', self.ctx.structure)
        self.report(
            f'ε∞ {dielectric.diel_elec:.3f}, ε_ion {dielectric.diel_ionic:.3f}, gap {dielectric.band_gap:.3f} eV, '
            f'dynamically stable: {dielectric.base.attributes.get("dynamically_stable")}'
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
