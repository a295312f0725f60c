"""The TopK SAE on latents of real sounds: trains without dead-feature collapse.

Real sounds = the 14 recordings (~34 s, 44.1 kHz, mostly mono) in the pyo wheel's
examples/snds, read the way `steerpad ingest` reads a file (`load_clip`: channels, rate,
leading silence) and cut into ingest-length clips (32 frames). Latents come from the
project's `small` Oobleck encoder: the trained default model under models/default/ once one
ships, until then a fixed-seed random init (a random conv net is still a deterministic,
structured map of the audio; the SAE sees real-sound statistics, not planted ones). 34 s is
only ~730 frames at hop 2048, so every file is also encoded at 7 sub-hop offsets (hop/8
apart): ~5900 vectors. Whole files are held out for validation.

Measured on 2 CPU cores, default SAE (64 -> 4096, k = 32), 300 steps, this VAE init
(manual_seed(0)), SAE seeds 0-2: dead/train 0.001 / 0.006 / 0.010 with the shipped AuxK,
0.14-0.15 without it (0.31-0.36 with the plain, not scale-free, AuxK loss: see
TopKSAE._aux_loss); FVE on the held-out files 0.98 either way; L0 = 32. At lr 0.1 without
AuxK the dictionary does collapse (dead 0.94) while the FVE stays at 0.98: the dead
fraction, not the FVE, is what catches it.
"""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from steerpad.offline.ingest import IngestConfig, load_clip
from steerpad.offline.latents import resolve_vae_dir
from steerpad.offline.sae import SAEConfig
from steerpad.offline.sae_train import SAETrainConfig, train_sae
from steerpad.offline.vae import OobleckVAE, get_config, load_vae

pytestmark = pytest.mark.slow  # ~15 s encoding + ~60 s training on 2 cores

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default"
VAL_FILES = ("alum4.wav", "snd_6.aif", "drumloop.wav")  # one of each family + the drum loop
OFFSETS = 8  # encodings per file, shifted by hop / OFFSETS samples each
CLIP_FRAMES = IngestConfig().frames  # what `steerpad ingest` stores per clip

DEAD_MAX = 0.5  # collapse = most of the dictionary dead
AUXK_DEAD_MAX = 0.05  # measured 0.001-0.010 with AuxK, 0.14-0.15 without
FVE_MIN = 0.8  # held-out files; measured 0.98 (0.89-0.92 with other VAE inits)


def _snds() -> Path:
    spec = importlib.util.find_spec("pyo")
    if spec is None or spec.origin is None:
        pytest.skip("pyo not installed: no real sounds to encode")
    snds = Path(spec.origin).parent / "examples" / "snds"
    if not snds.is_dir():
        pytest.skip("this pyo wheel has no examples/snds")
    return snds


def _encoder() -> OobleckVAE:
    cfg = resolve_vae_dir(DEFAULT_MODEL) / "config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("kind") == "oobleck_vae":
        return load_vae(cfg.parent).fold_weight_norm()  # the shipped default, once it exists
    torch.manual_seed(0)
    return OobleckVAE(get_config("small")).fold_weight_norm().eval()


def _encode_files(files: list[Path], vae: OobleckVAE, batch: int = 4) -> dict[str, np.ndarray]:
    """Each file at OFFSETS sub-hop shifts, cut into CLIP_FRAMES clips (the last one cut at
    the sound's end, rounded up to a frame) -> {file name: latent frames [N, D]}."""
    c = vae.config
    read = IngestConfig(sample_rate=c.sample_rate, channels=c.audio_channels, hop=c.hop,
                        frames=int(IngestConfig().max_read_s * c.sample_rate) // c.hop)
    clips = defaultdict(list)  # clip length -> [(file name, audio [C, T])]: batch equal shapes
    for path in files:
        audio, _ = load_clip(path, read)
        for o in range(OFFSETS):
            shifted = np.pad(audio, ((0, 0), (o * c.hop // OFFSETS, 0)))
            for s in range(0, shifted.shape[1], CLIP_FRAMES * c.hop):
                clip = shifted[:, s:s + CLIP_FRAMES * c.hop]
                clip = np.pad(clip, ((0, 0), (0, -clip.shape[1] % c.hop)))
                clips[clip.shape[1]].append((path.name, clip))
    out = defaultdict(list)
    with torch.inference_mode():  # batches of 4 1.5 s clips: the fastest on 2 cores
        for group in clips.values():
            for i in range(0, len(group), batch):
                chunk = group[i:i + batch]
                z = vae.encode(torch.from_numpy(np.stack([a for _, a in chunk]))).numpy()
                for (name, _), zi in zip(chunk, z):
                    out[name].append(zi.T)
    return {name: np.concatenate(parts) for name, parts in out.items()}


@pytest.fixture(scope="module")
def real_latents() -> tuple[np.ndarray, np.ndarray]:
    """(train [N, 64], val [M, 64]) latents of the pyo sounds, val = VAL_FILES."""
    files = sorted(p for p in _snds().iterdir() if p.suffix in (".wav", ".aif"))
    if not set(VAL_FILES) <= {p.name for p in files}:
        pytest.skip(f"this pyo wheel's snds lack some of {VAL_FILES}")
    latents = _encode_files(files, _encoder())
    train = np.concatenate([z for name, z in latents.items() if name not in VAL_FILES])
    val = np.concatenate([latents[name] for name in VAL_FILES])
    return train, val


def _train(train, val, out, **kw) -> dict[str, float]:
    aux_coef = kw.pop("aux_coef", SAEConfig.aux_coef)
    # The default SAE (64 -> 4096, k = 32); batch 1024, not 4096: ~4.7k training vectors
    # would make every step a full epoch. 300 steps = ~65 epochs, FVE has levelled off.
    cfg = SAETrainConfig(sae=SAEConfig(aux_coef=aux_coef), batch=1024, steps=300,
                         eval_every=100, checkpoint_every=300, **kw)
    return train_sae(train, val, cfg, out, progress=False)


def test_sae_on_real_sound_latents_has_no_dead_feature_collapse(real_latents, tmp_path):
    train, val = real_latents
    assert train.shape[1] == 64 and len(train) > 4000 and len(val) > 1000

    m = _train(train, val, tmp_path / "auxk")  # the shipped defaults: AuxK on, default lr
    k = SAEConfig().k
    # dead/train: dictionary features that fire on no training vector at the end (the
    # level pair not counted). dead/val is not asserted: features specific to the training
    # sounds are rightly silent on held-out ones.
    assert m["dead/train"] < AUXK_DEAD_MAX, m
    assert m["fve/val"] >= FVE_MIN, m
    assert m["l0/train"] == k and m["l0/val"] == k, m

    # AuxK is what keeps the dictionary alive: the same run without it leaves several
    # times more features dead.
    off = _train(train, val, tmp_path / "no_auxk", aux_coef=0.0)
    assert off["dead/train"] > 3 * m["dead/train"], (m, off)

    # The threshold catches a real collapse on the same data: a learning rate 33x the
    # default without AuxK kills ~95% of the dictionary while the FVE hardly moves.
    bad = _train(train, val, tmp_path / "collapse", aux_coef=0.0, lr=0.1)
    assert bad["dead/train"] > DEAD_MAX, bad
