"""Machine-learning layer: plain pymatgen structures in, numpy out; no AiiDA profile needed."""
