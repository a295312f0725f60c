"""steerpad.realtime: plays a bundle from MIDI; never imports torch or steerpad.offline.

Modules (docs/architecture.md has the threads and who owns what):

- bundle: read and check a bundle, the one contract with offline; run its ONNX models
- engine: MIDI events in, steered one-shots out, one block at a time (the audio callback's body)
- voices: the voice mixer (velocity, pan, chokes, steals, crossfades to fresh renders)
- renderer: the render worker, a steered render of every pad kept ready at the device rate
- faithful: faithful mode, the pad's own audio reshaped by the decoder's change
- masterbus: the pyo lookahead limiter on the output
- live: `steerpad live`, the play loop over PortAudio (LiveStream) or JACK (jackio)
- jackio: steerpad as a JACK client with named ports and a JACK MIDI input
- midi, midiparse, events: MIDI input (rtmidi), its parser, the events the engine takes
- presets: presets and controller maps (TOML)
- bounce: `steerpad render`, a MIDI file through the same engine, to WAV
- capture, onset: `steerpad live --input`, a hit from the audio input into a pad
- features, oscfeed, ring: the visualizer feed's frames, sent over OSC or written to a file
- viz (+ viz.html): `steerpad viz`, the visualizer page on 127.0.0.1
- osc_monitor: `steerpad-osc-monitor`, prints or replays the feed
- descriptors, probes: the shared spectral descriptors; the bundle's probes in numpy
- status, keys: the terminal status view of `steerpad live` and its keys
- config, shipped, demo, devices, learn: the config file, what the wheel ships, `steerpad demo`,
  `steerpad devices`, `steerpad learn`
- outputs, errors, limits, waits: what steerpad may overwrite, one-line errors, the audio options'
  ranges, bounded waits on servers that may hang
- service: the base of the service threads (start, stop, join, crash), and Loop, a service whose
  loop is a given function
"""
