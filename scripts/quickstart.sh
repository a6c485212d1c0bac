#!/usr/bin/env bash
# The main job on the embedded default (a `verdi presto` profile: SQLite + ZeroMQ broker, no services):
# install; set up profile, pseudos and codes; import 1,056 real DFPT results (also the known structures
# of the default hull); run a small screening funnel (substitution candidates → GNN predictions → the
# best relaxed with SevenNet-0, E_hull against the default hull, GNNs again → DFPT with Quantum ESPRESSO)
# on the daemon; then query and plot it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
SHARED=${AIIDA_DIELECTRICS_SHARED:-../shared}
# Offline: the pretrained MEGNet E_form model comes from this folder instead of Hugging Face.
export AIIDA_DIELECTRICS_MODEL_DIR=${AIIDA_DIELECTRICS_MODEL_DIR:-$SHARED/models/matgl}

bash scripts/install.sh
aiida-dielectrics setup \
    --pseudo-dir "$SHARED/pseudos/PseudoDojo-0.4-PBE-SR-noCC-standard" \
    --pseudo-hints "$SHARED/pseudos/PseudoDojo-0.4-PBE-SR-standard-hints.djson"
aiida-dielectrics import petousis2017 "$SHARED/data/petousis2017/dielectric_constant.csv"
echo
echo "Imported DFPT results with figure of merit Φ = ε_total·E_gap > 200 eV:"
aiida-dielectrics query --fom-min 200

echo
verdi daemon status >/dev/null 2>&1 || verdi daemon start 1
verdi run examples/submit_screening.py --wait
echo
echo "The campaign's relaxed candidates (stage 2) with their E_hull, best Φ_adj first:"
aiida-dielectrics query --kind prediction --group campaign --order-by fom_adj -n 10
echo "(every candidate as generated, stage 1: --group campaign/stage-1)"
aiida-dielectrics plot --group campaign --output pareto.html
echo "Open pareto.html in a browser for the interactive Pareto front."
