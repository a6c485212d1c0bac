"""``DielectricPhWorkChain``: aiida-quantumespresso's ``PhBaseWorkChain`` with the restarts real cells need.

Two failures seen on real runs that ``PhBaseWorkChain`` (aiida-quantumespresso 5.1) does not survive:

* **symmetry classes**: on a cell whose coordinates are symmetric only to ~1e-5 (a VASP-relaxed wurtzite
  AlN), ph.x stops in the mode-symmetry analysis with ``Error in routine divide_class (1): Wrong classes
  for C_6v`` (parsed as exit 312, incomplete output). The DFPT work chains symmetrise the cell first,
  which avoids it; should it still happen, ph.x is run again with ``search_sym = .false.``, which skips
  that analysis (the modes are then not labelled by irreducible representation; ε, Z* and the Γ force
  constants do not depend on it).
* **out of walltime**: ``PhBaseWorkChain`` restarts from the killed run's folder with ``recover``, but
  every ph.x restart from another ph.x folder raises ``KeyError: 'INPUTPH'`` in ``PhCalculation`` of
  aiida-quantumespresso 5.1 (upstream issue #1212). Until that is fixed, the run is restarted from the
  scf with twice the wall time (``max_seconds`` follows), which loses the partial progress but finishes.
"""

from __future__ import annotations

from aiida.engine import ProcessHandlerReport, process_handler
from aiida_quantumespresso.calculations.ph import PhCalculation
from aiida_quantumespresso.workflows.ph.base import PhBaseWorkChain

#: Messages of ph.x's symmetry analysis that ``search_sym = .false.`` avoids.
SYMMETRY_ERRORS = ('divide_class', 'find_mode_sym', 'set_irr_sym', 'symm_base', 'Wrong classes')
#: How much longer each walltime restart may run.
WALLTIME_FACTOR = 2.0


def stdout_of(node) -> str:
    """The ph.x standard output of a finished calculation, or an empty string if it was not retrieved."""
    if 'retrieved' not in node.outputs:
        return ''
    filename = node.get_option('output_filename') or 'aiida.out'
    try:
        return node.outputs.retrieved.base.repository.get_object_content(filename)
    except (FileNotFoundError, OSError):
        return ''


class DielectricPhWorkChain(PhBaseWorkChain):
    """``PhBaseWorkChain`` that restarts ph.x after symmetry-analysis errors and after running out of time."""

    @process_handler(priority=620, exit_codes=PhCalculation.exit_codes.ERROR_OUTPUT_STDOUT_INCOMPLETE)
    def handle_symmetry_analysis_error(self, node):
        """ph.x stopped in its mode-symmetry analysis: run again without it (``search_sym = .false.``)."""
        errors = [error for error in SYMMETRY_ERRORS if error in stdout_of(node)]
        if not errors:
            return None
        inputph = self.ctx.inputs.parameters.setdefault('INPUTPH', {})
        if inputph.get('search_sym') is False:
            self.report_error_handled(node, f'{errors[0]} again with search_sym = .false.: giving up')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
        inputph['search_sym'] = False
        self.report_error_handled(
            node, f'symmetry analysis failed ({errors[0]}): restarting with search_sym = .false.'
        )
        return ProcessHandlerReport(True)

    @process_handler(priority=610, exit_codes=PhCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME)
    def handle_scheduler_out_of_walltime(self, node):
        """Killed by the scheduler: restart from the scf with more time (see the module docstring)."""
        return self.restart_with_more_time(node)

    @process_handler(priority=580, exit_codes=PhCalculation.exit_codes.ERROR_OUT_OF_WALLTIME)
    def handle_out_of_walltime(self, node):
        """Stopped at ``max_seconds``: restart from the scf with more time (see the module docstring)."""
        return self.restart_with_more_time(node)

    def restart_with_more_time(self, node):
        options = self.ctx.inputs.metadata.options
        walltime = options.get('max_wallclock_seconds')
        if walltime is None:
            self.report_error_handled(node, 'no max_wallclock_seconds to increase: giving up')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
        options['max_wallclock_seconds'] = int(walltime * WALLTIME_FACTOR)
        self.ctx.inputs.parameters.setdefault('INPUTPH', {}).pop('max_seconds', None)  # set again from it
        self.ctx.restart_calc = (
            None  # a ph.x parent folder would raise KeyError (aiida-quantumespresso #1212)
        )
        action = f'restarting from the scf with max_wallclock_seconds {walltime} → {options["max_wallclock_seconds"]}'
        self.report_error_handled(node, action)
        return ProcessHandlerReport(True)
