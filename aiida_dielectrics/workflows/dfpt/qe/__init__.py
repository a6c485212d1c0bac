"""Quantum ESPRESSO engine: vc-relax, scf, ph.x at Γ (aiida-quantumespresso)."""
