"""AiiDA plugin for ML-guided discovery of dielectric materials, verified by DFPT."""

__version__ = '0.1.0'
