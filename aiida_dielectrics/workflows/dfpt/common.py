"""The one DFPT interface: :class:`DfptWorkChain`, which every engine's work chain subclasses.

The interface fixes what a caller (the screening work chain, the CLI, a user's script) sees whatever the
engine: the inputs ``structure``, ``symmetrize``, ``symprec``, ``min_interatomic_distance`` and the
engine's ``relax`` namespace; the outputs ``dielectric`` and ``structure``; the exit codes below; and the
builder factory :meth:`DfptWorkChain.get_builder_from_protocol` with one signature (``codes`` by role,
``potential_family``, ``protocol``, ``relax``, ``options``, ``overrides``). Engines register as
``aiida.workflows`` entry points ``dielectrics.dfpt.<engine>`` and are found by
:func:`aiida_dielectrics.workflows.dfpt.engines`.

Every engine's outline starts the same way: the input cell is refined to its space group by the
calcfunction :func:`~aiida_dielectrics.calculations.structures.symmetrize_structure` (the original stays
its provenance parent), then relaxed at the DFT level unless told not to, then the engine's own DFPT steps
run on the result.
"""

from __future__ import annotations

from typing import ClassVar

from aiida import orm
from aiida.engine import WorkChain, if_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin

from aiida_dielectrics.calculations.structures import symmetrize_structure
from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.science import symmetry
from aiida_dielectrics.science.structures import structure_problem

#: Protocol keys whose values are free-form engine input (namelists, INCAR tags, scheduler options): an
#: override may add keys below them; anywhere else an unknown key is a typo and is refused.
FREE_FORM_KEYS = ('parameters', 'incar', 'options', 'settings', 'potential_mapping', 'relax_settings')


def unknown_override_keys(overrides: dict, reference: dict, prefix: str = '') -> list[str]:
    """Dotted paths of keys in ``overrides`` that the protocol ``reference`` does not have."""
    unknown = []
    for key, value in overrides.items():
        path = f'{prefix}{key}'
        if key not in reference:
            unknown.append(path)
        elif isinstance(value, dict) and isinstance(reference[key], dict) and key not in FREE_FORM_KEYS:
            unknown.extend(unknown_override_keys(value, reference[key], f'{path}.'))
    return unknown


def validate_dfpt_inputs(inputs, _):
    """Refuse at submission a structure no engine can run: no atoms, no volume, overlapping atoms."""
    if 'structure' not in inputs:
        return None
    distance = inputs['min_interatomic_distance'].value if 'min_interatomic_distance' in inputs else 0.5
    problem = structure_problem(inputs['structure'].get_pymatgen_structure(), distance)
    return f'invalid structure: {problem}' if problem else None


class DfptWorkChain(ProtocolMixin, WorkChain):
    """Abstract: symmetrise, relax (optional), then the engine's DFPT steps; outputs ``dielectric``."""

    #: Roles of the codes the engine needs (keys of ``codes`` in :meth:`get_builder_from_protocol`) and
    #: the label of each that ``aiida-dielectrics setup`` registers, where it registers one.
    CODES: ClassVar[dict[str, str | None]] = {}
    #: The potential family used when the caller names none.
    DEFAULT_POTENTIAL_FAMILY: str = ''

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, help='The crystal to compute.')
        spec.input(
            'min_interatomic_distance',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.5),
            help='Atoms closer than this (Å) make the structure invalid.',
        )
        spec.input(
            'symmetrize',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='Refine the cell to its space group (primitive standard cell) before any DFT run.',
        )
        spec.input(
            'symprec',
            valid_type=orm.Float,
            default=lambda: orm.Float(symmetry.SYMPREC),
            help='Symmetry tolerance (Å) of the refinement: smaller displacements count as noise.',
        )
        spec.input(
            'min_band_gap',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.1),
            help='Below this band gap (eV) the crystal counts as a metal and no DFPT result is made.',
        )
        spec.inputs.validator = validate_dfpt_inputs
        spec.outline(
            cls.setup,
            if_(cls.should_symmetrize)(cls.symmetrize),
            cls.validate_engine_inputs,
            if_(cls.should_relax)(cls.run_relax, cls.inspect_relax),
            *cls.dfpt_steps(),
            cls.results,
        )
        spec.output(
            'dielectric', valid_type=DielectricData, help='ε∞, ε_ion, Born charges, Γ phonons, band gap.'
        )
        spec.output('structure', valid_type=orm.StructureData, help='The structure the DFPT ran on.')
        spec.exit_code(
            302,
            'ERROR_UNSUPPORTED_ELEMENT',
            message='The potential family `{family}` has no potential for {elements}.',
        )
        spec.exit_code(
            303,
            'ERROR_METAL',
            message='The crystal is metallic ({reason}); DFPT with an electric field needs an insulator.',
        )
        spec.exit_code(304, 'ERROR_SYMMETRIZATION', message='The cell could not be symmetrised: {reason}.')
        spec.exit_code(401, 'ERROR_SUB_PROCESS_FAILED_RELAX', message='The relaxation ({process}) failed.')
        spec.exit_code(403, 'ERROR_SUB_PROCESS_FAILED_DFPT', message='The DFPT run ({process}) failed.')
        spec.exit_code(
            404,
            'ERROR_MISSING_DIELECTRIC_OUTPUT',
            message='The DFPT run finished without the dielectric output: {reason}.',
        )

    @classmethod
    def dfpt_steps(cls) -> tuple:
        """The engine's outline steps between the (optional) relaxation and :meth:`results` (none here)."""
        return ()

    @classmethod
    def get_builder_from_protocol(
        cls,
        structure: orm.StructureData,
        *,
        codes: dict,
        protocol: str | None = None,
        potential_family: str | None = None,
        relax: bool = True,
        options: dict | None = None,
        overrides: dict | None = None,
    ):
        """A builder for ``structure`` with the protocol's inputs; ``codes`` maps each role of
        :attr:`CODES` to a code or its label; ``potential_family`` defaults to the engine's;
        ``relax=False`` skips the relaxation; ``options`` (e.g. resources) go to every calculation;
        ``overrides`` follows the nesting of the protocol file and may only name keys it has."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.structure = structure
        builder.symmetrize = orm.Bool(inputs['symmetrize'])
        for name in ('symprec', 'min_interatomic_distance', 'min_band_gap'):
            builder[name] = orm.Float(inputs[name])
        family = potential_family or cls.DEFAULT_POTENTIAL_FAMILY
        cls.fill_builder(builder, inputs, cls.load_codes(codes), family, relax, options or {})
        return builder

    @classmethod
    def fill_builder(
        cls, builder, inputs: dict, codes: dict, potential_family: str, relax: bool, options: dict
    ):
        """Set the engine's own inputs of ``builder`` from the protocol ``inputs`` (see above)."""
        raise NotImplementedError

    @classmethod
    def get_protocol_inputs(cls, protocol=None, overrides=None):
        """The protocol's inputs with ``overrides`` merged in, refusing override keys the protocol lacks."""
        reference = super().get_protocol_inputs(protocol)
        unknown = unknown_override_keys(overrides or {}, reference)
        if unknown:
            raise ValueError(
                f'unknown protocol override{"s" if len(unknown) > 1 else ""} {", ".join(unknown)} '
                f'(protocol `{protocol or cls.get_default_protocol()}` of {cls.__name__})'
            )
        return super().get_protocol_inputs(protocol, overrides)

    @classmethod
    def load_codes(cls, codes: dict) -> dict[str, orm.AbstractCode]:
        """``codes`` (role → code or label) as code nodes, refusing a missing role or an unknown label."""
        missing = sorted(set(cls.CODES) - set(codes))
        if missing:
            raise ValueError(f'{cls.__name__} needs codes for {", ".join(missing)}')
        return {role: orm.load_code(code) if isinstance(code, str) else code for role, code in codes.items()}

    def setup(self):
        self.ctx.structure = self.inputs.structure

    def should_symmetrize(self):
        return self.inputs.symmetrize.value

    def symmetrize(self):
        """Replace the working structure by its symmetrised primitive standard cell (with provenance)."""
        try:
            results = symmetrize_structure(
                structure=self.ctx.structure,
                symprec=self.inputs.symprec,
                metadata={'call_link_label': 'symmetrize'},
            )
        except ValueError as exception:
            return self.exit_codes.ERROR_SYMMETRIZATION.format(reason=str(exception))
        self.ctx.structure = results['structure']
        summary = results['symmetry'].get_dict()
        self.report(
            f'symmetrised to {summary["spacegroup_symbol"]} ({summary["spacegroup_number"]}), '
            f'{summary["num_sites_before"]} → {summary["num_sites_after"]} sites'
        )

    def validate_engine_inputs(self):
        """Engine checks that need the (symmetrised) structure, before anything expensive runs."""

    def should_relax(self):
        return 'relax' in self.inputs

    def run_relax(self):
        raise NotImplementedError

    def inspect_relax(self):
        raise NotImplementedError

    def failed(self, node, exit_code: str, process: str):
        """``exit_code`` (formatted with ``process``) if the child ``node`` failed, else ``None``."""
        if node.is_finished_ok:
            return None
        self.report(f'{process}<{node.pk}> failed with exit status {node.exit_status}: {node.exit_message}')
        return self.exit_codes[exit_code].format(
            process=f'{process}<{node.pk}>, exit status {node.exit_status}'
        )

    def dielectric(self) -> DielectricData:
        """The engine's ``DielectricData`` from its finished DFPT steps (made by a calcfunction)."""
        raise NotImplementedError

    def results(self):
        dielectric = self.dielectric()
        self.out('dielectric', dielectric)
        self.out('structure', self.ctx.structure)
        stable = dielectric.base.attributes.get('dynamically_stable', None)
        self.report(
            f'ε∞ {dielectric.diel_elec:.3f}, ε_ion {dielectric.diel_ionic:.3f}, gap {dielectric.band_gap:.3f} eV'
            + ('' if stable is None else f', dynamically stable: {stable}')
        )
