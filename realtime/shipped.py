"""What steerpad ships for a performer, found through the installed package (importlib.resources),
never through the source tree, so a wheel installed anywhere finds the same files:

    steerpad.presets   presets/*.toml, presets/controllers/*.toml, presets/demo.mid
    steerpad.models    models/default/ (the default bundle, with its MODEL_CARD.md: the kit is
                       derived from GPL and CC-BY-SA samples, and the card carries their notes)

In a source checkout (an editable install) these are the repository's own presets/ and models/.
`live`, `render` and `demo` play the default bundle on the default preset unless the command line
or the config file (config.py) names others.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from steerpad.realtime.errors import SteerpadError


def _folder(package: str) -> Path:
    """The installed folder of a data package (steerpad is always installed as files)."""
    root = files(package)
    path = Path(str(root))
    if not path.is_dir():  # e.g. imported from a zip: not a layout steerpad is installed in
        raise SteerpadError(f"steerpad's shipped files ({package}) are not a folder at {root}; "
                            "reinstall steerpad with pip")
    return path


def presets_dir() -> Path:
    """The shipped presets: default.toml, example.toml, default_kit.toml, demo.mid, controllers/."""
    return _folder("steerpad.presets")


def default_bundle() -> Path:
    """The default bundle (models/default)."""
    return _folder("steerpad.models") / "default"


def default_preset() -> Path:
    """The default preset: the default bundle's 16-pad kit and 8 knobs on the generic map."""
    return presets_dir() / "default.toml"


def demo_performance() -> Path:
    """The demo performance: a 51 s groove on the default preset's pads while each knob sweeps."""
    return presets_dir() / "demo.mid"

