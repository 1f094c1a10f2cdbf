"""A pretrained model in a local folder, as ``save_pretrained`` wrote it: what it is and what it says of itself.

::

    folder/
      config.json                 "architectures": ["MusicgenForConditionalGeneration"], the model's sizes
      model.safetensors           the weights (or model-00001-of-0000N.safetensors + an index, when sharded)
      README.md                   optional model card; its YAML front matter may declare ``license: cc-by-nc-4.0``
      tokenizer files             optional (a text-conditioned model's tokenizer)

:func:`read_pretrained` gives the facts the ledger records about a base model before anything trains from it: the
digest of its weights (its id: a changed folder is another base model), its architecture, and the licence its
model card declares. Nothing here loads a model or decides anything; :mod:`soundtrail.train.start` admits the
folder under the licence policy, and the family that fine-tunes it loads it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from soundtrail.atomic import sha256_file

CONFIG = "config.json"
MODEL_CARD = "README.md"


class PretrainedError(ValueError):
    """The folder is not a usable pretrained model; the message names the folder and what is missing."""


@dataclass(frozen=True)
class PretrainedFolder:
    path: Path
    id: str  # first 16 hex digits of the weights' sha256 (of each file's sha256, in name order, when sharded)
    architecture: str  # the transformers class config.json names
    config: dict[str, Any]  # config.json as written
    card_license: str | None  # the model card's front-matter ``license``, as written


def read_pretrained(path: str | Path) -> PretrainedFolder:
    """The facts of a ``save_pretrained`` folder; :class:`PretrainedError` when it is not one."""
    path = Path(path)
    config = read_model_config(path)
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise PretrainedError(f"{path}: no *.safetensors weights")
    return PretrainedFolder(path, weights_id(weights), architecture(config, path), config, card_license(path))


def read_model_config(path: str | Path) -> dict[str, Any]:
    """config.json of a ``save_pretrained`` folder (cheap: the weights are not read)."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise PretrainedError(f"{path}: no {CONFIG}: not a folder written by save_pretrained")
    try:
        return json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise PretrainedError(f"{path / CONFIG}: not JSON: {exc}") from exc


def architecture(config: dict[str, Any], path: str | Path) -> str:
    """The transformers class a folder's config.json names."""
    architectures = config.get("architectures") or []
    if not architectures:
        raise PretrainedError(f"{Path(path) / CONFIG} names no architecture")
    return str(architectures[0])


def weights_id(files: list[Path]) -> str:
    """One file: its sha256 (as codec ids are); several: the sha256 of their names and sha256s, in name order."""
    if len(files) == 1:
        return sha256_file(files[0])[:16]
    listing = "".join(f"{file.name} {sha256_file(file)}\n" for file in sorted(files))
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def card_license(path: Path) -> str | None:
    """The ``license`` of the model card's YAML front matter (Hugging Face's model-card metadata), if any."""
    card = path / MODEL_CARD
    if not card.is_file():
        return None
    lines = card.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    end = next((index for index, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None:
        return None
    try:
        metadata = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError:
        return None
    value = metadata.get("license") if isinstance(metadata, dict) else None
    return str(value) if value else None
