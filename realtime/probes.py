"""The bundle's descriptor probes, read in numpy: what a sound's SAE code says about it.

Each probe (trained offline, steerpad.offline.probes) is a linear softmax over a descriptor's
bins (e.g. 8 quantile bins of spectral centroid), read from the SAE code that codes.onnx gives:
logits = W[:, indices] . (values * sqrt(k / F)) + b. The realtime side uses it for the
visualizer's read-out of what is sounding, off the audio thread."""

from __future__ import annotations

import math

import numpy as np

from steerpad.realtime.errors import SteerpadError


class ProbeReader:
    """probes.safetensors of a bundle: `predict(values, indices)` -> each descriptor's predicted
    bin per frame, normalised 0-1 (0 = the lowest bin, 1 = the highest)."""

    def __init__(self, bundle):
        from safetensors.numpy import load_file

        path = bundle.path / bundle.manifest.get("probes_file", "probes.safetensors")
        try:
            tensors = load_file(str(path))
        except (OSError, ValueError) as e:
            raise SteerpadError(f"bundle {bundle.path}: {path.name} is not readable ({e}); "
                                "re-export the bundle") from None
        self.scale = math.sqrt(bundle.k / bundle.n_features)
        self.weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in sorted(tensors):
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "probe" and parts[2] == "weight":
                w, b = tensors[key], tensors.get(f"probe.{parts[1]}.bias")
                if b is None or w.ndim != 2 or w.shape[1] != bundle.n_features or b.shape != (w.shape[0],):
                    raise SteerpadError(f"bundle {bundle.path}: {path.name} probe {parts[1]!r} has weight "
                                        f"{list(w.shape)}; expected [bins, {bundle.n_features}] and a bias")
                self.weights[parts[1]] = (np.ascontiguousarray(w, np.float32), b.astype(np.float32))

    @property
    def descriptors(self) -> list[str]:
        return list(self.weights)

    def predict(self, values: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Codes values, indices [N, J] -> {descriptor: predicted bin / (bins - 1), [N] float32}."""
        x = values.astype(np.float32) * self.scale
        out = {}
        for name, (w, b) in self.weights.items():
            logits = np.einsum("cnj,nj->cn", w[:, indices], x) + b[:, None]
            out[name] = (logits.argmax(axis=0) / max(1, w.shape[0] - 1)).astype(np.float32)
        return out
