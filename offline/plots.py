"""Training-curve PNGs. `history` maps a metric name ("loss/train", "fve/val") to (step, value) pairs;
metrics sharing the group before "/" share a panel."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int) -> Path:
    """fig as a PNG at `path`, then closed. A write the system refuses (a full disk) names the
    file: matplotlib's own OSError does not ("No space left on device" alone)."""
    path = Path(path)
    try:
        fig.savefig(path, dpi=dpi)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    finally:
        plt.close(fig)
    return path


def plot_curves(history: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    groups: dict[str, list[str]] = defaultdict(list)
    for name in history:
        groups[name.split("/")[0]].append(name)
    fig, axes = plt.subplots(len(groups), 1, figsize=(7, 2.4 * max(len(groups), 1)), squeeze=False)
    for ax, (group, names) in zip(axes[:, 0], groups.items()):
        for name in names:
            points = history[name]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=name, marker="." if len(points) < 30 else None)
        ax.set_ylabel(group)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, 110)
