"""``dielectrics.dfpt.vasp``: static permittivity and Born charges with VASP through aiida-vasp 5.x.

After the common steps of :class:`~aiida_dielectrics.workflows.dfpt.common.DfptWorkChain` (symmetrise, then
a relaxation of cell and positions with ``vasp.relax``, ISIF = 3), one static DFPT run (``vasp.vasp`` with ``LEPSILON = .TRUE.``,
``IBRION = 8``) whose ε∞ (``epsilon``), ε_ion (``epsilon_ion``), Born charges and band gap the calcfunction
:func:`dielectric_from_vasp` turns into a ``DielectricData``. Restarts (unfinished runs, electronic
convergence) are aiida-vasp's ``VaspWorkChain`` handlers; an element without POTCAR in the family is
refused at submission, and every failure while running has an exit code of the common interface.

Why ``check_ionic_convergence`` is off for the DFPT step: aiida-vasp marks a run as ionically converged
only if it took fewer ionic steps than ``NSW``. An ``IBRION = 8`` run moves no ion and VASP needs
``NSW >= 1`` for it, so a correct run (one step, ``NSW = 1``) would always fail with exit 702
(``ERROR_IONIC_NOT_CONVERGED``). Electronic convergence and completion are still checked.
"""

from __future__ import annotations

import pathlib
from typing import ClassVar

from aiida import orm
from aiida.common import AttributeDict
from aiida.common.exceptions import NotExistent
from aiida.engine import ToContext, calcfunction
from aiida.plugins import WorkflowFactory
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_vasp.data.potcar import PotcarData
from pymatgen.io.vasp.inputs import Kpoints
from pymatgen.io.vasp.sets import MPRelaxSet

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.workflows.dfpt.common import DfptWorkChain, validate_dfpt_inputs

VaspWorkChain = WorkflowFactory('vasp.vasp')
VaspRelaxWorkChain = WorkflowFactory('vasp.relax')

#: INCAR tags of the DFPT step, enforced over any protocol or user value.
DFPT_INCAR = {'lepsilon': True, 'ibrion': 8, 'nsw': 1}


def kpoints_from_density(structure: orm.StructureData, density: float) -> orm.KpointsData:
    """Γ-centred mesh with ``density`` k-points per reciprocal atom (pymatgen's, as atomate used)."""
    mesh = Kpoints.automatic_density(structure.get_pymatgen_structure(), density, force_gamma=True).kpts[0]
    kpoints = orm.KpointsData()
    kpoints.set_cell_from_structure(structure)
    kpoints.set_kpoints_mesh([int(n) for n in mesh])
    return kpoints


def band_gap_of(misc: orm.Dict) -> float | None:
    """Band gap (eV) aiida-vasp derived from the eigenvalues and occupations, or None if not parsed."""
    properties = misc.get('band_properties') or {}
    gap = properties.get('band_gap')
    return None if gap is None else float(gap)


@calcfunction
def dielectric_from_vasp(
    structure: orm.StructureData, dielectrics: orm.ArrayData, misc: orm.Dict, born_charges=None
) -> DielectricData:
    """ε∞, ε_ion and Born charges of a VASP ``LEPSILON``/``IBRION = 8`` run as a ``DielectricData``."""
    return DielectricData(
        epsilon_electronic=dielectrics.get_array('epsilon'),
        epsilon_ionic=dielectrics.get_array('epsilon_ion'),
        band_gap=band_gap_of(misc),
        engine='vasp',
        structure=structure,
        born_charges=None if born_charges is None else born_charges.get_array('born_charges'),
    )


def missing_potcars(structure: orm.StructureData, family: str, mapping: dict) -> list[str]:
    """Elements of ``structure`` (with their POTCAR name) that the family ``family`` lacks."""
    missing = []
    for kind in structure.kinds:
        try:
            PotcarData.get_potcars_dict([kind.name], family_name=family, mapping=mapping)
        except (NotExistent, ValueError, KeyError):
            missing.append(f'{kind.symbol} ({mapping.get(kind.name, "not in potential_mapping")})')
    return missing


def validate_vasp_inputs(inputs, ctx):
    """The common structure checks, and a POTCAR family with a potential for every element."""
    problem = validate_dfpt_inputs(inputs, ctx)
    if problem or 'structure' not in inputs or 'dfpt' not in inputs:
        return problem
    dfpt = inputs['dfpt']
    if 'potential_family' not in dfpt or 'potential_mapping' not in dfpt:
        return None
    family = dfpt['potential_family'].value
    missing = missing_potcars(inputs['structure'], family, dfpt['potential_mapping'].get_dict())
    if missing:
        return f'the POTCAR family `{family}` has no potential for {", ".join(missing)}'
    return None


class DfptVaspWorkChain(DfptWorkChain):
    """Symmetrise, relax and DFPT with VASP; outputs ``dielectric`` and ``structure`` like the QE chain."""

    CODES: ClassVar[dict[str, str | None]] = {'vasp': None}
    DEFAULT_POTENTIAL_FAMILY = 'PBE.54'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            'kpoints_density',
            valid_type=orm.Float,
            required=False,
            help='k-points per reciprocal atom; the Γ-centred mesh is made for the structure each step runs '
            'on (the relaxed one for the DFPT). Without it the namespaces need `kpoints` or `kpoints_spacing`.',
        )
        spec.expose_inputs(
            VaspRelaxWorkChain,
            namespace='relax',
            exclude=('structure',),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'Inputs of the relaxation; without them the (symmetrised) input structure is used as is.',
            },
        )
        spec.expose_inputs(
            VaspWorkChain,
            namespace='dfpt',
            exclude=('structure',),
            namespace_options={
                'help': 'Inputs of the static DFPT run; LEPSILON, IBRION and NSW are set here.'
            },
        )
        spec.inputs.validator = validate_vasp_inputs

    @classmethod
    def dfpt_steps(cls):
        return (cls.run_dfpt, cls.inspect_dfpt)

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return pathlib.Path(__file__).parent / 'protocol.yaml'

    @classmethod
    def fill_builder(cls, builder, inputs, codes, potential_family, relax, options):
        """vasp.vasp inputs (protocols ``fast``, ``moderate``, ``precise``, ``paper``; code ``vasp``).

        ``potential_family`` is an uploaded aiida-vasp POTCAR family (``aiida-vasp potcar uploadfamily``).
        """
        code, structure = codes['vasp'], builder.structure
        choice = {**MPRelaxSet.CONFIG['POTCAR'], **inputs['potential_mapping']}
        mapping = {kind.name: choice.get(kind.symbol, kind.symbol) for kind in structure.kinds}
        calc_options = recursive_merge(inputs['options'], options)

        def vasp_inputs(step: dict) -> dict:
            return {
                'code': code,
                'potential_family': orm.Str(potential_family),
                'potential_mapping': orm.Dict(mapping),
                'parameters': orm.Dict({'incar': recursive_merge(inputs['incar'], step.get('incar', {}))}),
                'max_iterations': orm.Int(inputs['max_iterations']),
                'clean_workdir': orm.Bool(inputs['clean_workdir']),
                'calc': {'metadata': {'options': calc_options}},
            }

        builder.kpoints_density = orm.Float(inputs['kpoints_density'])
        builder.dfpt = vasp_inputs(inputs['dfpt'])
        if relax:
            builder.relax = {
                'vasp': vasp_inputs(inputs['relax']),
                'relax_settings': orm.Dict(inputs['relax']['relax_settings']),
            }

    def _kpoints_for(self, inputs: AttributeDict) -> None:
        """Set the mesh of ``kpoints_density`` for the current structure, unless the namespace has one."""
        if 'kpoints_density' in self.inputs and 'kpoints' not in inputs and 'kpoints_spacing' not in inputs:
            inputs.kpoints = kpoints_from_density(self.ctx.structure, self.inputs.kpoints_density.value)

    def run_relax(self):
        inputs = AttributeDict(self.exposed_inputs(VaspRelaxWorkChain, namespace='relax'))
        inputs.structure = self.ctx.structure
        inputs.vasp = AttributeDict(inputs.vasp)
        self._kpoints_for(inputs.vasp)
        inputs.metadata.call_link_label = 'relax'
        node = self.submit(VaspRelaxWorkChain, **inputs)
        self.report(f'launching VaspRelaxWorkChain<{node.pk}>')
        return ToContext(workchain_relax=node)

    def inspect_relax(self):
        """A failed relaxation, or a metal after it, ends the chain before the DFPT run."""
        node = self.ctx.workchain_relax
        if failure := self.failed(node, 'ERROR_SUB_PROCESS_FAILED_RELAX', 'VaspRelaxWorkChain'):
            return failure
        self.ctx.structure = node.outputs.relax.structure
        gap = band_gap_of(node.outputs.misc) if 'misc' in node.outputs else None
        if gap is not None and gap < self.inputs.min_band_gap.value:
            return self.exit_codes.ERROR_METAL.format(reason=f'band gap {gap:.3f} eV after the relaxation')

    def run_dfpt(self):
        inputs = AttributeDict(self.exposed_inputs(VaspWorkChain, namespace='dfpt'))
        inputs.structure = self.ctx.structure
        self._kpoints_for(inputs)
        parameters = inputs.parameters.get_dict()
        parameters['incar'] = {**parameters.get('incar', {}), **DFPT_INCAR}
        inputs.parameters = orm.Dict(parameters)
        settings = inputs.settings.get_dict() if 'settings' in inputs else {}
        parser_settings = settings.setdefault('parser_settings', {})
        parser_settings['check_ionic_convergence'] = (
            False  # IBRION = 8 moves no ion: see the module docstring
        )
        inputs.settings = orm.Dict(settings)
        inputs.metadata.call_link_label = 'dfpt'
        node = self.submit(VaspWorkChain, **inputs)
        self.report(f'launching VaspWorkChain<{node.pk}> (LEPSILON, IBRION = 8)')
        return ToContext(workchain_dfpt=node)

    def inspect_dfpt(self):
        """The DFPT run must have finished, written ε∞ and ε_ion, and found a gap."""
        node = self.ctx.workchain_dfpt
        if failure := self.failed(node, 'ERROR_SUB_PROCESS_FAILED_DFPT', 'VaspWorkChain'):
            return failure
        if 'dielectrics' not in node.outputs:
            return self.exit_codes.ERROR_MISSING_DIELECTRIC_OUTPUT.format(
                reason='no dielectric tensor in vasprun.xml (was LEPSILON honoured?)'
            )
        missing = {'epsilon', 'epsilon_ion'} - set(node.outputs.dielectrics.get_arraynames())
        if missing:
            return self.exit_codes.ERROR_MISSING_DIELECTRIC_OUTPUT.format(
                reason=f'vasprun.xml lacks {", ".join(sorted(missing))}'
            )
        gap = band_gap_of(node.outputs.misc)
        if gap is None or gap < self.inputs.min_band_gap.value:
            reason = 'no band gap parsed' if gap is None else f'band gap {gap:.3f} eV in the DFPT run'
            return self.exit_codes.ERROR_METAL.format(reason=reason)

    def dielectric(self) -> DielectricData:
        outputs = self.ctx.workchain_dfpt.outputs
        extra = {'born_charges': outputs.born_charges} if 'born_charges' in outputs else {}
        return dielectric_from_vasp(
            structure=self.ctx.structure, dielectrics=outputs.dielectrics, misc=outputs.misc, **extra
        )
