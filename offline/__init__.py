"""steerpad.offline: trains and exports bundles. Modules that need torch import it themselves, so
importing this package (and the CLI) stays light. From steerpad.realtime it takes only the bundle
contract and what it names (tests/test_packaging.py: SEAM).

Modules, stage by stage (docs/architecture.md):

- cli: the `steerpad` command; each subcommand is a module with add_arguments / run
- flags: ConfigFlags, the command-line flags built from the stages' config dataclasses
- ingest, ingest_store, labels: folders of one-shots -> a store of equal-length labelled clips
- vae, spectral, sao_weights: the VAE family (Stable Audio Open's Oobleck, the small spectral
  default) and loading SAO weights
- vae_train, losses, discriminator, augment, checkpoint, threads, plots: training the VAE
- latents: the latent store (`steerpad encode`)
- sae, sae_train: the TopK sparse autoencoder and its training
- descriptors, probes, directions, steering: descriptors per frame, probes on SAE codes, knob
  directions and their α calibration, steering latents
- knobs, evaluate, fidelity: per-mode knob feel (`steerpad calibrate`), `steerpad eval` and its
  measurement (α sweeps described on audio, which the steering stage calibrates with), --fidelity
- export: write the bundle (ONNX, probes, kit, manifest)
- train_all: `steerpad train`, every stage, resumable
"""
