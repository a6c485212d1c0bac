"""Sphinx configuration: MyST pages, furo theme; API, CLI and work-chain reference generated from the code."""

import re
import warnings

import aiida.sphinxext.process
from aiida.common.warnings import AiidaDeprecationWarning
from aiida.manage.configuration import Profile, load_profile
from docutils.core import publish_doctree

from aiida_dielectrics import __version__

# The `aiida-workchain` directive loads a profile; a storage-less one (as aiida-quantumespresso's docs
# do) lets the build run on a machine without any.
load_profile(Profile('docs', {'process_control': {}, 'storage': {}}), allow_switch=True)
# autodoc reads every attribute of the Node classes, deprecated ones included.
warnings.filterwarnings('ignore', category=AiidaDeprecationWarning)
# The directive parses every port's help as RST on its own, printing docutils' complaints about the plain-text
# help of aiida-quantumespresso's and aiida-vasp's exposed ports (which the HTML leaves out anyway) to stderr.
aiida.sphinxext.process.publish_doctree = lambda text: publish_doctree(
    text, settings_overrides={'report_level': 4}
)

project = 'aiida-dielectrics'
author = 'aiida-dielectrics developers'
release = __version__
extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx_click',
    'aiida.sphinxext',
]
myst_enable_extensions = ['colon_fence', 'dollarmath']
myst_heading_anchors = 3
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
templates_path = ['_templates']
exclude_patterns = [
    '_build',
    '_templates',
    'evaluation.md',
]  # evaluation.md: generated, included by topics/models.md
html_theme = 'furo'
html_title = f'aiida-dielectrics {__version__}'
autosummary_generate = True
smartquotes = False  # keep `--option` and quotes in CLI help and code as typed
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'

# In click's plain-text help, ``member_*/`` is neither RST emphasis nor a reference; sphinx-click's own
# markup (``**Required**``, directives) is left as it is.
_PLAIN_TEXT_SPECIAL = re.compile(r'(?<!\*)\*(?!\*)|(?<=\w)_(?=\W|$)')


def _plain_click_help(app, ctx, lines):
    lines[:] = [s if s.lstrip().startswith('.. ') else _PLAIN_TEXT_SPECIAL.sub(r'\\\g<0>', s) for s in lines]


def setup(app):
    for event in ('description', 'options', 'arguments', 'epilog'):
        app.connect(f'sphinx-click-process-{event}', _plain_click_help)
