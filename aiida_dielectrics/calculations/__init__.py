"""Process functions of the AiiDA layer: each wraps one job of :mod:`aiida_dielectrics.science` or
:mod:`aiida_dielectrics.ml` so that its inputs and outputs are recorded as provenance."""
