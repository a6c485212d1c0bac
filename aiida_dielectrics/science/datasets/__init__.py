"""Readers of published dielectric data sets: one module per format, rows of plain Python and numpy out."""
