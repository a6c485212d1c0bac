"""VASP engine: relax, then LEPSILON + IBRION=8 (aiida-vasp)."""
