"""DFPT verification: one common interface (:mod:`.common`), one subpackage per engine.

Engines are found through the ``aiida.workflows`` entry points ``dielectrics.dfpt.<engine>``; nothing
outside an engine's own folder names it.
"""
