"""The `steerpad` command. Each subcommand lives in its own module with `add_arguments(parser)`
and `run(args) -> int`; only the chosen one is imported, so realtime commands never load torch."""

from __future__ import annotations

import argparse
import importlib
import sys

from steerpad.realtime.errors import SteerpadError

# name -> (module, one-line help). Two-word names are subcommands of a group ("train sae").
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("steerpad.offline.ingest", "read folders of one-shots into a training store"),
    "encode": ("steerpad.offline.latents", "encode an ingested store into a latent store"),
    "train vae": ("steerpad.offline.vae_train", "train the small Oobleck VAE on an ingested store"),
    "train sae": ("steerpad.offline.sae_train", "train the TopK sparse autoencoder on a latent store"),
    "export": ("steerpad.offline.export", "export a VAE, SAE and steering directions as a playable bundle"),
    "train": ("steerpad.offline.train_all", "one-shots to a bundle: every stage, resumable"),
    "eval": ("steerpad.offline.evaluate", "measure a bundle's steering on held-out one-shots"),
    "live": ("steerpad.realtime.live", "play a bundle from a MIDI controller, live"),
    "render": ("steerpad.realtime.bounce", "render a MIDI performance to a WAV file (a bounce)"),
    "devices": ("steerpad.realtime.devices", "list audio devices and MIDI ports"),
    "learn": ("steerpad.realtime.learn", "MIDI learn: touch pads and knobs, write a controller map"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: steerpad COMMAND [options]   (steerpad COMMAND --help for its options)", ""]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _pick(argv: list[str]) -> tuple[str, list[str]] | None:
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            return name, argv[words:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    picked = _pick(argv)
    if picked is None:
        print(f"steerpad: error: unknown command {' '.join(argv[:2])!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    name, rest = picked
    module_name, help_ = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"steerpad {name}", description=help_)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"steerpad: error: `steerpad {name}` needs the training extra ({e.name} is missing): "
              "pip install 'steerpad[train]'", file=sys.stderr)
        return 2
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except SteerpadError as e:
        print(f"steerpad: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("steerpad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
