"""The layer rule: the science core and the ML layer import nothing from AiiDA or from the AiiDA layer."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).parents[1] / 'aiida_dielectrics'
PURE = ('science', 'ml')
AIIDA_LAYER = ('data', 'calculations', 'workflows', 'cli', 'tools')


def pure_modules():
    return sorted(path for layer in PURE for path in (PACKAGE / layer).rglob('*.py'))


def imported_names(path: pathlib.Path) -> set[str]:
    """Every module named by an import anywhere in the file (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f'{node.module}.{alias.name}' for alias in node.names)
    return names


def forbidden_imports(path: pathlib.Path) -> list[str]:
    """Imports of aiida, of another AiiDA plugin, or of this package's AiiDA layer."""

    def forbidden(name):
        if name == 'aiida' or name.startswith('aiida.'):
            return True
        if name.startswith('aiida_dielectrics.'):
            return name.split('.')[1] in AIIDA_LAYER
        return name.startswith('aiida_')

    return sorted(name for name in imported_names(path) if forbidden(name))


@pytest.mark.parametrize('path', pure_modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_pure_module_imports_no_aiida(path):
    assert not forbidden_imports(path), f'{path.relative_to(PACKAGE)} imports {forbidden_imports(path)}'


def test_pure_layers_load_without_aiida():
    """Importing every pure module in a fresh interpreter leaves ``aiida`` unimported."""
    modules = [
        '.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts).removesuffix('.__init__')
        for path in pure_modules()
    ]
    code = f'import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint(sorted(m for m in sys.modules if m == "aiida" or m.startswith("aiida.")))'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]'


def test_the_rule_catches_an_aiida_import(tmp_path):
    """The check is live: a module importing aiida inside a function is caught."""
    module = tmp_path / 'bad.py'
    module.write_text(
        'import numpy\nfrom aiida_dielectrics.ml import files\n'
        'def f():\n    from aiida.orm import Dict\n    from aiida_dielectrics.data.model import ModelData\n'
    )
    assert forbidden_imports(module) == [
        'aiida.orm',
        'aiida.orm.Dict',
        'aiida_dielectrics.data.model',
        'aiida_dielectrics.data.model.ModelData',
    ]
