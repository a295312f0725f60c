"""The latent store: every clip of an ingested store encoded once by a VAE, and `steerpad encode`.

Folder layout (all files written atomically):
- `meta.json`: written first; the VAE (name, config, weight fingerprint), the source store
  (path, fingerprint), sample_rate, channels, hop, latent_dim, shard_size. A re-run checks it,
  so an interrupted encode resumes only with the same VAE and store.
- `shards/shard-NNNNN.safetensors`: one tensor per clip, keyed by clip id, float32 `[D, F]`
  (the posterior mean over the whole zero-padded clip, F = clip samples / hop). A shard that
  exists is finished: resuming skips it.
- `stats.safetensors`: `mean`, `std` float32 `[D]` over the train split's sounding frames.
- `index.json`: written last (so its presence means complete): one record per clip.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steerpad.offline.ingest_store import ClipRecord
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.outputs import claim_output

FORMAT = "steerpad-latents-1"


@dataclass(kw_only=True)
class LatentRecord(ClipRecord):
    """One encoded clip: its ingest ClipRecord (with `frames` counted in latent frames: the leading
    frames that hold sound) plus where its latents are."""

    latent_frames: int
    """All latent frames stored for the clip (F of `latents(id)`)."""
    shard: int
    """Index of the shard file holding the clip."""


class LatentStore:
    """Read side of a finished latent store; see the module docstring for the files."""

    def __init__(self, path: Path, meta: dict[str, Any], records: list[LatentRecord],
                 mean: np.ndarray, std: np.ndarray):
        self.path, self.meta, self.records, self.mean, self.std = path, meta, records, mean, std
        self._by_id = {r.id: r for r in records}

    @classmethod
    def open(cls, path: str | Path) -> LatentStore:
        """SteerpadError naming the path if it is missing, unfinished or not a latent store."""
        from safetensors.numpy import load_file

        path = Path(path)
        if not (path / "meta.json").is_file():
            raise SteerpadError(f"{path}: not a latent store (no meta.json); make one with "
                                f"`steerpad encode STORE --vae DIR --out {path}`")
        if not (path / "index.json").is_file():
            raise SteerpadError(f"{path}: the encode was interrupted (no index.json); run the same "
                                "`steerpad encode` again to finish it")
        try:
            meta = json.loads((path / "meta.json").read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            index = json.loads((path / "index.json").read_text())
            records = [LatentRecord(**r) for r in index["records"]]
            stats = load_file(str(path / "stats.safetensors"))
        except (ValueError, KeyError, TypeError, OSError, AttributeError, RecursionError) as e:
            raise SteerpadError(f"{path}: not a readable latent store ({e}); "
                                "encode it again") from None
        return cls(path, meta, records, stats["mean"], stats["std"])

    def __len__(self) -> int:
        return len(self.records)

    def ids(self, split: str | None = None) -> list[int]:
        return [r.id for r in self.records if split is None or r.split == split]

    def latents(self, id: int) -> np.ndarray:
        """Latents of clip `id`: float32 `[D, F]` (F = its latent_frames)."""
        from safetensors import safe_open

        record = self._by_id.get(id)
        if record is None:
            raise SteerpadError(f"{self.path}: no clip with id {id} (ids 0..{len(self) - 1})")
        with safe_open(str(shard_path(self.path, record.shard)), framework="numpy") as f:
            return f.get_tensor(str(id))

    def frames(self, split: str | None = None) -> np.ndarray:
        """Every sounding frame of every clip in `split` ("train", "val", None = all), stacked in
        record order: float32 `[N, D]`."""
        from safetensors.numpy import load_file

        if split not in (None, "train", "val"):
            raise SteerpadError(f"split must be 'train', 'val' or None, got {split!r}")
        chosen = [r for r in self.records if split is None or r.split == split]
        parts: list[np.ndarray] = []
        for shard in sorted({r.shard for r in chosen}):
            tensors = load_file(str(shard_path(self.path, shard)))
            parts += [tensors[str(r.id)][:, :r.frames].T for r in chosen if r.shard == shard]
        if not parts:
            return np.zeros((0, int(self.meta["latent_dim"])), np.float32)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def shard_path(root: Path, shard: int) -> Path:
    return root / "shards" / f"shard-{shard:05d}.safetensors"


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _fingerprint(items: Any) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:32]


def weights_fingerprint(model: Any) -> str:
    """sha256 over the model's tensors (names, shapes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def check_compatible(store: Any, vae_config: Any, where: str, hop: bool = True) -> None:
    """The store's sample rate, channels and (with `hop`) hop must be the VAE's; SteerpadError
    naming both values otherwise. Training crops in samples, so it checks no hop."""
    sc = store.config
    pairs = [("sample_rate", sc.sample_rate, "sample_rate", vae_config.sample_rate),
             ("channels", sc.channels, "audio_channels", vae_config.audio_channels)]
    if hop:
        pairs.append(("hop", sc.hop, "hop", vae_config.hop))
    for store_field, have, vae_field, want in pairs:
        if have != want:
            raise SteerpadError(f"{where}: the store has {store_field}={have} but the VAE "
                                f"({vae_config.name!r}) has {vae_field}={want}; re-ingest to match "
                                "the VAE or pick another VAE")


def encode_store(store: Any, vae: Any, out: str | Path, *, vae_source: str = "", batch: int = 8,
                 shard_size: int = 256, max_shards: int | None = None, device: str = "cpu",
                 progress: bool = True, on_shard: Callable[[int], None] | None = None
                 ) -> LatentStore | None:
    """Encode every clip of `store` (an IngestStore) with `vae` (an OobleckVAE; its weight norm is
    folded in place) into `out`. Resumes an interrupted run: finished shards are kept. With
    `max_shards`, stops after encoding that many new shards and returns None if unfinished.
    `on_shard(k)` is called after shard k is written. Returns the opened store when complete."""
    import torch
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    if batch < 1 or shard_size < 1:
        raise SteerpadError(f"encode: --batch and --shard-size must be >= 1, got {batch} and "
                            f"{shard_size}")
    out = Path(out)
    claim_output(out, "latents", inputs=[p for p in [getattr(store, "path", None)] if p], resume=True)
    check_compatible(store, vae.config, f"encode {out}")
    vae.fold_weight_norm().eval().to(device)
    records = sorted(store.records, key=lambda r: r.id)
    meta = {
        "format": FORMAT,
        "vae": {"name": vae.config.name, "source": vae_source, "config": asdict(vae.config),
                "fingerprint": weights_fingerprint(vae)},
        "store": {"path": str(getattr(store, "path", "")), "fingerprint": _fingerprint(
            [asdict(store.config), [(r.id, r.sha256, r.split, r.frames) for r in records]])},
        "sample_rate": vae.config.sample_rate, "channels": vae.config.audio_channels,
        "hop": vae.config.hop, "latent_dim": vae.config.latent_dim, "shard_size": shard_size,
        "clips": len(records),
    }
    if (out / "meta.json").is_file():
        old = json.loads((out / "meta.json").read_text())
        for key in ("vae", "store", "shard_size"):
            same = (old.get(key, {}).get("fingerprint") == meta[key]["fingerprint"]
                    if key != "shard_size" else old.get(key) == shard_size)
            if not same:
                what = key.replace("_", " ")
                raise SteerpadError(f"{out}: holds latents from a different {what}; use another "
                                    "--out or delete it to start over")
        if (out / "index.json").is_file():
            return LatentStore.open(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    _write_json(out / "meta.json", meta)

    shards = [records[i:i + shard_size] for i in range(0, len(records), shard_size)]
    done = [k for k in range(len(shards)) if shard_path(out, k).is_file()]
    bar = tqdm(total=len(records), initial=sum(len(shards[k]) for k in done), desc="encode",
               unit="clip", disable=not progress)
    written = 0
    for k, shard in enumerate(shards):
        if k in done:
            continue
        if max_shards is not None and written >= max_shards:
            bar.close()
            return None
        tensors: dict[str, np.ndarray] = {}
        for s in range(0, len(shard), batch):
            chunk = shard[s:s + batch]
            x = torch.from_numpy(np.stack([store.audio(r.id) for r in chunk]).astype(np.float32))
            with torch.inference_mode():
                z = vae.encode(x.to(device)).float().cpu().numpy()
            tensors.update({str(r.id): np.ascontiguousarray(z[j]) for j, r in enumerate(chunk)})
            bar.update(len(chunk))
        tmp = shard_path(out, k).with_suffix(".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, shard_path(out, k))
        written += 1
        if on_shard is not None:
            on_shard(k)
    bar.close()
    return _finalise(out, shards)


def _finalise(out: Path, shards: list[list[Any]]) -> LatentStore:
    """Index the shards and compute the train split's per-channel mean and std."""
    from safetensors.numpy import load_file, save_file

    latent_records: list[LatentRecord] = []
    total: np.ndarray | None = None
    total_sq: np.ndarray | None = None
    count = 0
    for k, shard in enumerate(shards):
        tensors = load_file(str(shard_path(out, k)))
        for r in shard:
            z = tensors[str(r.id)]
            frames = int(min(r.frames, z.shape[1]))
            latent_records.append(LatentRecord(**{**asdict(r), "frames": frames},
                                               latent_frames=int(z.shape[1]), shard=k))
            if r.split == "train":
                sounding = z[:, :frames].astype(np.float64)
                total = sounding.sum(1) + (0 if total is None else total)
                total_sq = (sounding**2).sum(1) + (0 if total_sq is None else total_sq)
                count += frames
    if count == 0 or total is None or total_sq is None:
        raise SteerpadError(f"{out}: the store has no sounding frames in its train split, so the "
                            "latents cannot be standardised; re-ingest with training clips")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    tmp = out / "stats.safetensors.tmp"
    save_file({"mean": mean.astype(np.float32), "std": std.astype(np.float32)}, str(tmp),
              metadata={"frames": str(count), "split": "train"})
    os.replace(tmp, out / "stats.safetensors")
    _write_json(out / "index.json", {"records": [asdict(r) for r in latent_records]})
    return LatentStore.open(out)


# ----------------------------------------------------------------- CLI

def resolve_vae_dir(path: Path) -> Path:
    """A save_vae folder, or a `steerpad train vae` output folder holding one as `vae/`."""
    if not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
        return path / "vae"
    return path


def load_encoder(vae: str, weights: Path | None) -> tuple[Any, str]:
    """`--vae`/`--vae-weights` -> (OobleckVAE, description of where it came from)."""
    from steerpad.offline.vae import OobleckVAE, get_config, load_vae

    if vae == "sao":
        if weights is None:
            raise SteerpadError("--vae sao needs --vae-weights FILE (a Stable Audio Open "
                                "checkpoint, .safetensors or .ckpt)")
        from steerpad.offline.sao_weights import load_sao_weights

        if not Path(weights).is_file():
            raise SteerpadError(f"--vae-weights {weights}: no such file")
        model = OobleckVAE(get_config("sao"))
        load_sao_weights(model, weights)
        return model, f"sao:{weights}"
    if weights is not None:
        raise SteerpadError("--vae-weights goes only with --vae sao; a VAE folder holds its own "
                            "weights")
    folder = resolve_vae_dir(Path(vae))
    return load_vae(folder), str(folder)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="an ingested store (steerpad ingest)")
    parser.add_argument("--vae", required=True,
                        help="a VAE folder (save_vae / steerpad train vae output) or 'sao'")
    parser.add_argument("--vae-weights", type=Path, default=None,
                        help="Stable Audio Open weights, with --vae sao")
    parser.add_argument("--out", type=Path, required=True, help="latent store folder to write")
    parser.add_argument("--batch", type=int, default=8, help="clips per encoder call")
    parser.add_argument("--shard-size", type=int, default=256, help="clips per shard file")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from steerpad.offline.ingest import IngestStore
    from steerpad.offline.threads import num_threads

    store = IngestStore.open(args.store)
    model, source = load_encoder(args.vae, args.vae_weights)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with num_threads(args.threads):
        latents = encode_store(store, model, args.out, vae_source=source, batch=args.batch,
                               shard_size=args.shard_size, device=device,
                               progress=not args.no_progress)
    assert latents is not None  # no max_shards: always finishes
    n_train = sum(r.frames for r in latents.records if r.split == "train")
    print(f"encode: {len(latents)} clips, {n_train} train frames of {latents.meta['latent_dim']} "
          f"dims -> {args.out}")
    return 0
