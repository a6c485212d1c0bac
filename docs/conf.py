"""Sphinx configuration: MyST Markdown pages, furo theme, API pages from docstrings."""

from aiida_dielectrics import __version__

project = 'aiida-dielectrics'
author = 'aiida-dielectrics developers'
release = __version__
extensions = ['myst_parser', 'sphinx.ext.autodoc', 'sphinx.ext.napoleon']
myst_enable_extensions = ['colon_fence', 'dollarmath']
myst_heading_anchors = 3
source_suffix = {'.md': 'markdown'}
exclude_patterns = ['_build', 'evaluation.md']  # generated; included by models.md
html_theme = 'furo'
html_title = f'aiida-dielectrics {__version__}'
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
suppress_warnings = ['myst.xref_missing']
