"""Training checkpoints: one dict (model, optimizer, step, config, RNG states), written
atomically, read back with `weights_only=True`. Exact resume needs every RNG restored."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steerpad.realtime.errors import SteerpadError


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": list(map(lambda v: list(v) if isinstance(v, tuple) else v, random.getstate())),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` via a temporary file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SteerpadError(f"{path}: no checkpoint there; start without --resume") from None
    except Exception as e:  # a torn or foreign file
        raise SteerpadError(f"{path}: not a readable steerpad checkpoint ({e.__class__.__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); delete it to start over") from None
