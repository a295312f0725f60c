"""Test rigs shared by the tests and the benchmarks (bench/ puts tests/ on sys.path):

- jackrig: a dummy JACK server, a MIDI sender, an audio recorder and player as real JACK
  clients, steerpad live on them (live_rig), a CPU hog;
- planted: synthetic latents with planted sparse features, for the SAE's tests and benchmark.
"""
