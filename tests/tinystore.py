"""Test helper for the VAE-training and latent-store tests: a small ingested store of synthetic
drums (tests/drumsynth.py) and a tiny Oobleck config that fits it (22.05 kHz stereo, hop 256)."""

from __future__ import annotations

from pathlib import Path

from steerpad.offline.ingest import IngestConfig, ingest
from steerpad.offline.vae import OobleckConfig
from tests.drumsynth import write_kits

SAMPLE_RATE = 22050
HOP = 256
VAL_KIT = "synth_kit_2"


def tiny_config(**changes) -> OobleckConfig:
    """4 base channels, strides 4·8·8 = 256, 8 latent dims: a few thousand parameters."""
    kw = {"name": "tiny", "sample_rate": SAMPLE_RATE, "audio_channels": 2, "channels": 4,
          "c_mults": [1, 2, 4], "strides": [4, 8, 8], "latent_dim": 8}
    return OobleckConfig(**{**kw, **changes})


def make_store(root: Path, frames: int = 16, **config) -> Path:
    """Three synthetic kits (20 clips: 12 Hydrogen velocity layers + 8 plain files), ingested
    with hop 256 and `frames` frames a clip; kit `VAL_KIT` is the validation split."""
    kits = root / "kits"
    write_kits(kits, n_kits=3, hits_per_kit=4, seed=0, sample_rate=SAMPLE_RATE)
    out = root / "store"
    base = {"sample_rate": SAMPLE_RATE, "channels": 2, "hop": HOP, "frames": frames,
            "val_kits": [VAL_KIT], "workers": 1}
    ingest([kits], out, IngestConfig(**{**base, **config}), progress=False)
    return out
