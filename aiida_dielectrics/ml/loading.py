"""Find and load the screening models: pretrained matgl MEGNets and the ε ensembles trained here.

A model is named either by a path, or by a name looked up first in a *model folder* (``--model-dir`` or
``$AIIDA_DIELECTRICS_MODEL_DIR``), then among the models shipped inside the package, and last on the
Hugging Face Hub, downloaded into matgl's cache as matgl does it. Every name ends as a local folder, so a
model node can always be built from the files that were loaded. Nothing reads the project's ``shared/``
folder implicitly: tests and CI point the model folder at it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import typing

from aiida_dielectrics.ml.files import CARD, MATGL_FILES
from aiida_dielectrics.ml.transforms import MemberSpread

if typing.TYPE_CHECKING:  # torch is imported where it is used: the CLI reads this module's names first
    import torch

#: Environment variable naming a folder of local models (one sub-folder per model name).
MODEL_DIR_ENV = 'AIIDA_DIELECTRICS_MODEL_DIR'
#: Models shipped with the package (the default ε and band-gap ensembles), one sub-folder per name.
PACKAGED_MODELS = pathlib.Path(__file__).parents[1] / 'models'

#: Default model name per predicted quantity. ``band_gap`` is the shipped ensemble fine-tuned on the Petousis
#: PBE gaps; the pretrained ``MEGNet-MP-2019.4.1-BandGap-mfi`` stays selectable by name (under matgl 4 it
#: predicts ≈ 0 eV for wide-gap oxides such as MgO, see docs/topics/models.md).
DEFAULT_MODEL_NAMES = {
    'e_form': 'MEGNet-MP-2018.6.1-Eform',
    'band_gap': 'band_gap',
    'diel_elec': 'diel_elec',
    'diel_ionic': 'diel_ionic',
}
#: The MEGNet that ε members are fine-tuned from unless told otherwise: the multi-fidelity band-gap model.
PRETRAINED = 'MEGNet-MP-2019.4.1-BandGap-mfi'
#: Names of the ensembles trained here: found locally or not at all (they are not on the Hub).
ENSEMBLE_NAMES = ('band_gap', 'diel_elec', 'diel_ionic')
#: State attribute of the multi-fidelity band-gap MEGNet (and of models fine-tuned from it): 0 = PBE.
PBE_FIDELITY = 0


def allow_matgl_pickles():
    """matgl ≥ 4 loads weights with ``weights_only=True``; its pretrained MEGNets pickle a Normalizer."""
    import torch
    from matgl.data.transformer import LogTransformer, Normalizer

    torch.serialization.add_safe_globals([Normalizer, LogTransformer])


def model_dir(explicit: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The local model folder: ``explicit`` if given, else ``$AIIDA_DIELECTRICS_MODEL_DIR``, else none."""
    value = explicit or os.environ.get(MODEL_DIR_ENV)
    return pathlib.Path(value).expanduser() if value else None


def resolve(name: str | os.PathLike, directory: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder of model ``name``: a path as is, else the model folder's or the package's sub-folder of that
    name, else the folder matgl's cache holds it in after downloading it from the Hub (:func:`hub_folder`)."""
    path = pathlib.Path(name).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or str(name).startswith(('.', '~')):
        raise FileNotFoundError(f'no model folder {path}')
    for base in (model_dir(directory), PACKAGED_MODELS):
        if base is not None and (base / str(name)).is_dir():
            return base / str(name)
    if str(name) in ENSEMBLE_NAMES:
        raise FileNotFoundError(
            f'no ensemble named {str(name)!r} in the model folder (${MODEL_DIR_ENV}) or the package'
        )
    return hub_folder(str(name))


def hub_folder(name: str) -> pathlib.Path:
    """The folder in matgl's cache with the files of Hub model ``name``, downloaded first if needed.

    matgl 4 takes a bare name from its Hugging Face organisation (``materialyze/<name>``) and an
    ``owner/name`` as it is, and downloads with ``huggingface_hub`` into ``matgl.config.MATGL_CACHE``
    (``~/.cache/matgl``); this does the same, so a second call (or matgl itself) finds the files there,
    offline too (``HF_HUB_OFFLINE=1``).
    """
    import matgl.config
    from huggingface_hub import hf_hub_download
    from matgl.utils.io import HF_MATGL_ORG

    repository = name if '/' in name else f'{HF_MATGL_ORG}/{name}'
    try:
        paths = [
            hf_hub_download(repo_id=repository, filename=filename, cache_dir=matgl.config.MATGL_CACHE)
            for filename in MATGL_FILES
        ]
    except Exception as exception:  # offline, unknown repository, HTTP errors: huggingface_hub has many
        reason = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
        raise FileNotFoundError(
            f'no model {name!r} in the model folder (${MODEL_DIR_ENV}) or the package, and none downloaded '
            f'from the Hugging Face Hub ({repository}): {reason}'
        ) from exception
    return pathlib.Path(paths[0]).parent


def load_matgl(folder: str | os.PathLike):
    """A matgl model from a local folder, in evaluation mode."""
    import matgl

    allow_matgl_pickles()
    model = matgl.load_model(str(folder))
    model.eval()
    return model


@dataclasses.dataclass
class GraphMember:
    """One matgl graph model and the state attribute it is called with.

    ``state`` is ``[PBE_FIDELITY]`` for models with a fidelity embedding (the band-gap MEGNet and the ε and
    band-gap members fine-tuned from it, which keep its state embedding and were trained at state 0) and
    ``None`` for the others (matgl then uses the converter's default).
    """

    model: torch.nn.Module

    @property
    def megnet(self):
        return getattr(self.model, 'model', self.model)

    @property
    def cutoff(self) -> float:
        return float(self.megnet.cutoff)

    @property
    def element_types(self) -> tuple[str, ...]:
        return tuple(self.megnet.element_types)

    @property
    def state(self) -> torch.Tensor | None:
        import torch

        embedding = getattr(self.megnet, 'embedding', None)
        if getattr(embedding, 'ntypes_state', None):
            return torch.tensor([PBE_FIDELITY], dtype=torch.long)
        return None


@dataclasses.dataclass
class ModelSet(MemberSpread):
    """The models predicting one quantity: one model, or an ensemble whose σ is the member spread.

    ``members`` are :class:`GraphMember` (batched together through shared crystal graphs) or, for
    architectures that do not work on crystal graphs (e.g. Wren), objects with ``predict(structures)``.
    ``transform`` names the target transform (:func:`.transforms.inverse_transform`) that maps member
    outputs back to the quantity itself; mean and σ are taken after it (:meth:`summarize`).
    """

    target: str
    members: list
    transform: str = 'identity'
    architecture: str = 'megnet'
    source: str = ''
    sigma_scale: float = 1.0

    @property
    def is_graph(self) -> bool:
        return all(isinstance(member, GraphMember) for member in self.members)


def load_model_set(
    target: str, name: str | os.PathLike, directory: str | os.PathLike | None = None
) -> ModelSet:
    """Load a single matgl model or an ensemble folder (``model_card.json`` + ``member_<i>/``)."""
    location = resolve(name, directory)
    if not (location / CARD).is_file():
        return ModelSet(target, [GraphMember(load_matgl(location))], source=str(location))
    card = json.loads((location / CARD).read_text())
    architecture = card.get('architecture', 'megnet')
    folders = [location / f'member_{i}' for i in range(int(card['members']))]
    if architecture == 'megnet':
        members = [GraphMember(load_matgl(folder)) for folder in folders]
    else:
        # Non-graph architectures bring their own member class with ``predict(structures)``.
        from aiida_dielectrics.ml.ensemble import member_class

        members = [member_class(architecture).load(folder) for folder in folders]
    return ModelSet(
        target,
        members,
        card.get('transform', 'identity'),
        architecture,
        str(location),
        float(card.get('sigma_scale', 1.0)),
    )


def load_predictors(
    directory: str | os.PathLike | None = None,
    names: dict | None = None,
    optional=('diel_elec', 'diel_ionic'),
) -> dict[str, ModelSet]:
    """The model sets for every quantity (defaults from :data:`DEFAULT_MODEL_NAMES`, overridden by ``names``).

    Quantities in ``optional`` whose default model cannot be found are left out (their columns stay
    empty) instead of failing: until an ε ensemble is installed, E_form and the gap are still useful.
    """
    names = {**DEFAULT_MODEL_NAMES, **(names or {})}
    sets = {}
    for target, name in names.items():
        try:
            sets[target] = load_model_set(target, name, directory)
        except FileNotFoundError:
            if target not in optional or name != DEFAULT_MODEL_NAMES[target]:
                raise
    return sets
