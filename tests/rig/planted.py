"""Synthetic latents with planted sparse features: the SAE's tests (tests/offline/test_sae.py) and its
training benchmark (bench/bench.py) train on them."""

from __future__ import annotations

import numpy as np


def planted_latents(n: int, d_in: int = 64, n_atoms: int = 256, active: float = 4.0,
                    noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic latents with planted sparse structure, for tests and benchmarks: each vector
    is a sparse non-negative mix of random unit atoms (Poisson(active)+1 draws, Zipf-ish
    popularity, log-normal weights times a log-normal per-vector loudness) plus Gaussian noise
    (noise x the signal's RMS), then per-channel scales and offsets like real latents.
    Returns (x [n, d_in] float32, atoms [n_atoms, d_in])."""
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((n_atoms, d_in))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    popularity = 1.0 / np.arange(1, n_atoms + 1) ** 0.7
    popularity /= popularity.sum()
    slots = int(active * 3) + 2
    x = np.empty((n, d_in))
    for i in range(0, n, 65536):  # chunks keep the [chunk, slots, d_in] gather small
        m = min(65536, n - i)
        idx = rng.choice(n_atoms, size=(m, slots), p=popularity)  # repeats just add up
        w = rng.lognormal(0.0, 0.5, (m, slots))
        w *= np.arange(slots) < np.minimum(rng.poisson(active, (m, 1)) + 1, slots)
        w *= rng.lognormal(0.0, 0.5, (m, 1))  # loudness: the same atoms at different levels
        x[i:i + m] = np.einsum("ns,nsd->nd", w, atoms[idx])
    x += noise * x.std() * rng.standard_normal(x.shape)
    x = x * rng.uniform(0.5, 2.0, d_in) + rng.standard_normal(d_in)
    return x.astype(np.float32), atoms.astype(np.float32)
