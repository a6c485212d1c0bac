"""The science core: plain pymatgen structures and numpy arrays in, numbers out; no AiiDA profile needed.

Nothing under this package imports ``aiida`` (``tests/test_layers.py`` enforces it), so candidates,
figures of merit, selection, tensors, phonons, hulls and the data-set readers run in any Python session.
"""
