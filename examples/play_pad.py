"""Play one pad of a bundle, steered by one knob, through sounddevice (or into a WAV file).

    python examples/play_pad.py                                # the shipped kit's snare, brighter
    python examples/play_pad.py --pad kick --direction boomier --knob 0.1
    python examples/play_pad.py --out snare.wav                # no sound card: write it instead

A knob position (0..1) is a share of the direction's calibrated range, as on the controller:
0.5 is centred (the pad plays its own sample: bit for bit at the bundle's rate, e.g. --rate 44100
for the shipped bundle; at the default 48000, resampled), 0 and 1 are the calibrated ends.
"""

import argparse

import numpy as np
import soundfile as sf

from steerpad.realtime import shipped
from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.renderer import PadSound, RenderWorker

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--bundle", default=None, help="a bundle folder (default: the shipped one)")
ap.add_argument("--pad", default="snare", help="a kit entry of the bundle")
ap.add_argument("--direction", default="brighter")
ap.add_argument("--knob", type=float, default=0.85, help="knob position 0..1 (0.5: centred)")
ap.add_argument("--rate", type=int, default=48000, help="output sample rate")
ap.add_argument("--out", default=None, help="write a WAV file instead of playing")
args = ap.parse_args()

bundle = load_bundle(args.bundle or shipped.default_bundle())
entries = {e.name: e for e in bundle.kit}
if args.pad not in entries or args.direction not in bundle.direction_names():
    ap.error(f"pads: {', '.join(entries)}; directions: {', '.join(bundle.direction_names())}")

# What a pad plays: its latents and its own audio ([T, C]), in faithful mode (the sample itself,
# reshaped by the change the decoder makes when steered).
entry = entries[args.pad]
sound = PadSound(entry.latents, np.ascontiguousarray(entry.audio.T), bundle.sample_rate, "faithful")

# One alpha per direction; this knob's comes from its calibrated scale for the mode.
alpha = np.zeros(len(bundle.directions), np.float32)
k = bundle.direction_names().index(args.direction)
alpha[k] = bundle.directions[k].scale("faithful").alpha(2 * args.knob - 1)

# The render worker's render: steer + decode (onnxruntime), the faithful change, resampling.
audio, _ = RenderWorker(bundle, [sound], args.rate).render(sound, alpha)
print(f"{args.pad}, {args.direction} at {args.knob:.2f} (alpha {alpha[k]:+.2f}): "
      f"{audio.shape[0] / args.rate:.2f} s, peak {np.abs(audio).max():.2f}")
if args.out:
    sf.write(args.out, audio, args.rate, subtype="FLOAT")
else:
    import sounddevice as sd

    sd.play(audio, args.rate)
    sd.wait()
