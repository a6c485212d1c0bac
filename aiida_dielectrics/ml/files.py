"""Model files on disk: matgl's three-file layout, the folders of an ensemble, the member class that reads
each architecture's folders, and their checksum."""

from __future__ import annotations

import hashlib
import pathlib

#: The files of one model in matgl's layout.
MATGL_FILES = ('model.pt', 'state.pt', 'model.json')
#: An ensemble folder holds this card next to its ``member_<i>/`` folders.
CARD = 'model_card.json'
#: architecture -> "module:Class" of its member implementation (imported when first used).
ARCHITECTURES = {
    'megnet': 'aiida_dielectrics.ml.ensemble:MEGNetMember',
    'wren': 'aiida_dielectrics.ml.wren:WrenMember',
    'embedding-mlp': 'aiida_dielectrics.ml.embedding_mlp:EmbeddingMLPMember',
}


def model_folders(root: pathlib.Path) -> list[pathlib.Path]:
    """The model folders under ``root``: ``root`` itself, or its sub-folders for an ensemble."""
    root = pathlib.Path(root)
    if (root / 'model.json').is_file():
        return [root]
    return sorted(path for path in root.iterdir() if path.is_dir() and (path / 'model.json').is_file())


def tree_sha256(root: pathlib.Path) -> str:
    """One checksum over the relative paths and contents of all files under ``root``."""
    root = pathlib.Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob('*') if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
