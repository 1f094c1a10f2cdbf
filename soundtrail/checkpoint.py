"""Checkpoints: safetensors weights + JSON config, and a resumable training state.

Layout of one checkpoint directory::

    model.safetensors   weights only (safe to load, no pickle)
    config.json         {"kind": ..., "config": {...}, "step": N, ...metadata}
    train_state.pt      the trainer's state (optimizers, schedules, loss history), RNG states and step

``config.json`` is written last and renamed into place, so a directory without it is an
unfinished checkpoint (:func:`is_complete` says which).
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from soundtrail.atomic import atomic_path, atomic_write_text

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_STATE = "train_state.pt"


def save_weights(directory: str | Path, model: torch.nn.Module, kind: str, config: Any, **metadata: Any) -> Path:
    """Write the model's weights and config into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    config_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    document = {"kind": kind, "config": config_dict, **metadata}
    atomic_write_text(directory / CONFIG, json.dumps(document, indent=2, sort_keys=True))
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` document of a finished checkpoint."""
    return json.loads((Path(directory) / CONFIG).read_text())


def load_weights(directory: str | Path, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
    """Load ``model.safetensors`` into ``model`` (strict: every tensor must match)."""
    model.load_state_dict(load_file(str(Path(directory) / WEIGHTS), device=str(device)))


def start_from(directory: str | Path, model: torch.nn.Module, kind: str, config: Any) -> None:
    """Load a finished checkpoint's weights into ``model`` as where a new run begins (the new model's parent).

    Only a checkpoint of the same ``kind`` and model ``config`` fits; anything else is refused, naming what
    differs, never loaded in part.
    """
    document = read_config(directory)
    if document.get("kind") != kind:
        raise ValueError(f"{directory} holds a {document.get('kind')!r} checkpoint: a {kind} run cannot start from it")
    wanted = json.loads(json.dumps(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)))
    held = document.get("config") or {}
    differ = sorted(key for key in set(wanted) | set(held) if wanted.get(key) != held.get(key))
    if differ:
        raise ValueError(f"{directory} holds a {kind} model of another architecture ({', '.join(differ)} differ): "
                         'a run cannot continue from it; set [train] init = "scratch" to start afresh')
    load_weights(directory, model)


def save_train_state(directory: str | Path, step: int, state: dict[str, Any]) -> None:
    """Save what continuing bit-for-bit from ``step`` needs: the trainer's ``state`` (optimizers, schedules,
    auxiliary modules, loss history) and every RNG's state."""
    document = {
        "step": step,
        "state": state,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }
    with atomic_path(Path(directory) / TRAIN_STATE) as tmp:
        torch.save(document, tmp)


def load_train_state(directory: str | Path) -> tuple[int, dict[str, Any]]:
    """Restore every RNG's state and return ``(step, state)`` as :func:`save_train_state` saved them."""
    document = torch.load(Path(directory) / TRAIN_STATE, map_location="cpu", weights_only=False)
    rng = document["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return document["step"], document["state"]


def is_complete(directory: str | Path) -> bool:
    """True when the checkpoint has both weights and config (config is written last)."""
    directory = Path(directory)
    return (directory / CONFIG).exists() and (directory / WEIGHTS).exists()


def pick_device() -> torch.device:
    """CUDA when present, else CPU: every model path must run on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
