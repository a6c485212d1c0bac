#!/usr/bin/env bash
# The main job on the embedded default (a `verdi presto` profile: SQLite + ZeroMQ, no services):
# install, set up profile + pseudos + codes, import 1,056 real DFPT results, query them.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${AIIDA_DIELECTRICS_SHARED:-../shared}

bash scripts/install.sh
aiida-dielectrics setup \
    --pseudo-dir "$SHARED/pseudos/PseudoDojo-0.4-PBE-SR-noCC-standard" \
    --pseudo-hints "$SHARED/pseudos/PseudoDojo-0.4-PBE-SR-standard-hints.djson"
aiida-dielectrics import petousis2017 "$SHARED/data/petousis2017/dielectric_constant.csv"
echo
echo "Imported DFPT results with figure of merit Φ = ε_total·E_gap > 200 eV:"
aiida-dielectrics query --fom-min 200
echo
echo "More: aiida-dielectrics query --help; docs/tutorial.md"
