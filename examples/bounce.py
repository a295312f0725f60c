"""Bounce a MIDI performance to a WAV file with a bundle and a preset: what `steerpad render`
does, in a few calls. Notes land on their exact sample; knob CCs steer the pads they reach.

    python examples/bounce.py performance.mid out.wav
    python examples/bounce.py presets/demo.mid demo.wav --preset presets/example.toml

The same performance, bundle and preset always give the same samples.
"""

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from steerpad.realtime import shipped
from steerpad.realtime.bounce import bounce, read_performance
from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.events import NoteOn
from steerpad.realtime.presets import load_preset

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("midi", type=Path)
ap.add_argument("out", type=Path)
ap.add_argument("--bundle", default=None, help="a bundle folder (default: the shipped one)")
ap.add_argument("--preset", default=None, help="a preset TOML (default: the shipped default)")
ap.add_argument("--rate", type=int, default=48000)
args = ap.parse_args()

bundle = load_bundle(args.bundle or shipped.default_bundle())
preset = load_preset(args.preset or shipped.default_preset())

# The performance as (sample time, event) pairs at our rate; 14-bit CCs as the controller sends them.
events = read_performance(args.midi, args.rate, preset.controller.cc14)

# The engine that plays live, driven block by block from the events (in memory: short pieces;
# `steerpad render` streams long ones to disk).
audio, counters = bounce(bundle, preset, events, args.rate)
sf.write(args.out, audio, args.rate, subtype="FLOAT")
hits = sum(isinstance(e, NoteOn) for _, e in events)
print(f"{args.out}: {audio.shape[0] / args.rate:.1f} s, {hits} note-ons, {counters['renders']} renders, "
      f"peak {float(np.abs(audio).max()):.2f}")
