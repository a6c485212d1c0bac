"""Relaxation of cell and positions with a universal interatomic potential (pure: no AiiDA).

ML properties and hull energies mean most on a relaxed structure, and a substituted candidate's cell is
only a guess. Two potentials whose weights ship inside their wheels (nothing is downloaded at run time):
SevenNet-0 (``sevenn``, Matbench Discovery F1 0.724, the default) and CHGNet 0.3.0 (``chgnet``, F1 0.613).
A :class:`Relaxer` loads its potential once and relaxes many structures, each with ASE's FIRE on a
``FrechetCellFilter`` (cell and positions together, as Matbench Discovery relaxes) to ``fmax``; a
structure that cannot be relaxed (an element the potential lacks, overlapping atoms, exploding forces,
a cell that falls apart) gets a reason and the others go on. ASE's optimisers move one structure at a
time, so structures are relaxed one after another; batching them would need a batched optimiser.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from pymatgen.core import Structure

from aiida_dielectrics.science.energies import mp_corrected_energy
from aiida_dielectrics.science.structures import structure_problem

DEFAULT_POTENTIAL = 'sevennet-0'
#: Matbench Discovery's convergence criterion (eV/Å) and a step limit that most small cells meet.
FMAX = 0.05
MAX_STEPS = 500
#: Forces above this (eV/Å) mean the potential left its training domain: the relaxation is stopped.
MAX_FORCE = 100.0
#: A relaxed cell more than this many times larger or smaller than the input has fallen apart.
MAX_VOLUME_RATIO = 3.0


@dataclasses.dataclass(frozen=True)
class Potential:
    """A loaded potential: an ASE calculator and the elements it was trained on."""

    name: str
    version: str
    calculator: object
    elements: frozenset[str]


def _load_sevennet(device: str) -> Potential:
    import sevenn
    from ase.data import chemical_symbols
    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='No tensor product accelerator')
        calculator = SevenNetCalculator('7net-0', device=device)
    elements = frozenset(chemical_symbols[number] for number in calculator.type_map)
    return Potential('sevennet-0', f'SevenNet-0 (sevenn {sevenn.__version__})', calculator, elements)


def _load_chgnet(device: str) -> Potential:
    import chgnet
    from ase.data import chemical_symbols
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = CHGNet.load(use_device=device, verbose=False)
    calculator = CHGNetCalculator(model, use_device=device, on_isolated_atoms='error')
    count = model.atom_embedding.embedding.num_embeddings  # atomic numbers 1…count
    elements = frozenset(chemical_symbols[1 : count + 1])
    return Potential('chgnet', f'CHGNet {model.version} (chgnet {chgnet.__version__})', calculator, elements)


#: Potential name → loader; the names are what users pass (``--potential``).
POTENTIALS: dict[str, Callable[[str], Potential]] = {'sevennet-0': _load_sevennet, 'chgnet': _load_chgnet}

_LOADED: dict[tuple[str, str], Potential] = {}


def load_potential(name: str = DEFAULT_POTENTIAL, device: str = 'cpu') -> Potential:
    """The potential ``name`` (loaded once per process: SevenNet-0 takes ~10 s)."""
    if name not in POTENTIALS:
        raise ValueError(f'unknown potential {name!r}; choose one of {", ".join(POTENTIALS)}')
    key = (name, device)
    if key not in _LOADED:
        _LOADED[key] = POTENTIALS[name](device)
    return _LOADED[key]


@dataclasses.dataclass
class Relaxation:
    """The outcome for one structure. ``reason`` is ``None`` when it relaxed to ``fmax``.

    ``energy`` is the potential's own energy (eV/atom) and ``energy_mp`` the same on the MP2020 scale
    (NaN where the scheme does not apply); ``volume_change`` is V_relaxed / V_input − 1; ``max_force`` is the
    largest force the optimizer converged on (eV/Å: atoms and, with the cell free, the cell filter's stress
    term), so a converged result has it below ``fmax``. A relaxation
    that ran out of steps keeps its last structure and energy, with ``converged`` false and a reason;
    one that failed outright has ``structure`` ``None`` and NaN energies.
    """

    structure: Structure | None
    energy: float = math.nan
    energy_mp: float = math.nan
    volume_change: float = math.nan
    steps: int = 0
    converged: bool = False
    max_force: float = math.nan
    seconds: float = 0.0
    reason: str | None = None
    mp_reason: str | None = None

    def as_dict(self) -> dict:
        """Plain numbers and strings (no structure), NaN as ``None``: for a table or an AiiDA ``Dict``."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values.pop('structure')
        return {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in values.items()
        }


class RelaxationError(Exception):
    """Raised inside a relaxation to stop it with a reason."""


class Relaxer:
    """Relax structures with one potential: loaded once, then any number of :meth:`relax` calls.

    ``threads`` sets torch's intra-op threads for the whole process (``torch.set_num_threads``);
    ``None`` leaves torch's setting (``OMP_NUM_THREADS``) alone.
    """

    def __init__(
        self,
        potential: str = DEFAULT_POTENTIAL,
        fmax: float = FMAX,
        max_steps: int = MAX_STEPS,
        threads: int | None = None,
        device: str = 'cpu',
    ):
        if fmax <= 0 or max_steps < 1:
            raise ValueError(f'fmax must be > 0 and max_steps ≥ 1 (got {fmax}, {max_steps})')
        if threads is not None:
            import torch

            torch.set_num_threads(int(threads))
        self.potential = load_potential(potential, device)
        self.fmax = float(fmax)
        self.max_steps = int(max_steps)

    @property
    def parameters(self) -> dict:
        """What determines a relaxation's result (for provenance and reuse)."""
        return {'potential': self.potential.name, 'fmax': self.fmax, 'max_steps': self.max_steps}

    def relax(
        self, structures: Sequence[Structure], fix_cell: bool = False, progress: bool = False
    ) -> list[Relaxation]:
        """One :class:`Relaxation` per structure, in order; a failure never stops the others.

        ``fix_cell`` relaxes the positions only (a molecule in a box keeps its box).
        """
        from tqdm import tqdm

        return [
            self.relax_one(structure, fix_cell)
            for structure in tqdm(structures, desc='relax', unit=' structures', disable=not progress)
        ]

    def relax_one(self, structure: Structure, fix_cell: bool = False) -> Relaxation:
        start = time.perf_counter()
        problem = self.problem(structure)
        try:
            if problem is not None:
                raise RelaxationError(problem)
            relaxation = self._relax(structure, fix_cell)
        except RelaxationError as exception:
            relaxation = Relaxation(None, reason=str(exception))
        except Exception as exception:  # the potential itself failed: report it, go on with the others
            message = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
            relaxation = Relaxation(None, reason=f'{self.potential.name} failed: {message}')
        relaxation.seconds = time.perf_counter() - start
        return relaxation

    def problem(self, structure: Structure) -> str | None:
        """Why ``structure`` cannot be relaxed with this potential, or ``None``."""
        if not structure.is_ordered:
            return 'disordered structure (partial occupancies) is not supported'
        unsupported = sorted({site.specie.symbol for site in structure} - self.potential.elements)
        if unsupported:
            return f'unsupported element(s) for {self.potential.name}: {", ".join(unsupported)}'
        return structure_problem(structure)

    def _relax(self, structure: Structure, fix_cell: bool) -> Relaxation:
        from ase.filters import FrechetCellFilter
        from ase.optimize import FIRE
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = self.potential.calculator
        volume = atoms.get_volume()
        optimizable = atoms if fix_cell else FrechetCellFilter(atoms)
        optimizer = FIRE(optimizable, logfile=None)
        converged = False
        for converged in optimizer.irun(fmax=self.fmax, steps=self.max_steps):  # noqa: B007
            forces = atoms.get_forces()
            if not np.all(np.isfinite(forces)) or not math.isfinite(atoms.get_potential_energy()):
                raise RelaxationError(f'non-finite energy or forces at step {optimizer.nsteps}')
            largest = float(np.linalg.norm(forces, axis=1).max())
            if largest > MAX_FORCE:
                raise RelaxationError(
                    f'exploding forces: {largest:.0f} eV/Å at step {optimizer.nsteps} (limit {MAX_FORCE:g})'
                )
            ratio = atoms.get_volume() / volume
            if not 1 / MAX_VOLUME_RATIO < ratio < MAX_VOLUME_RATIO:
                raise RelaxationError(f'the cell fell apart: volume ×{ratio:.2f} at step {optimizer.nsteps}')
        relaxed = AseAtomsAdaptor.get_structure(atoms)
        energy = float(atoms.get_potential_energy()) / len(atoms)
        energy_mp, mp_reason = mp_corrected_energy(relaxed, energy)
        largest = float(np.linalg.norm(optimizable.get_forces(), axis=1).max())
        return Relaxation(
            relaxed,
            energy=energy,
            energy_mp=energy_mp,
            volume_change=relaxed.volume / structure.volume - 1,
            steps=int(optimizer.nsteps),
            converged=bool(converged),
            max_force=largest,
            reason=None
            if converged
            else f'not converged within {self.max_steps} steps (fmax {self.fmax} eV/Å)',
            mp_reason=mp_reason,
        )


def record(result: Relaxation, structure: Structure, potential: Potential) -> dict:
    """``result`` (of relaxing ``structure``) as plain data, with what a hull needs: the potential, and
    the formula and composition of the structure."""
    composition = structure.composition
    return {
        **result.as_dict(),
        'potential': potential.name,
        'potential_version': potential.version,
        'formula': composition.reduced_formula,
        'composition': {str(element): float(amount) for element, amount in composition.items()},
    }
