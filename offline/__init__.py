"""steerpad.offline: ingest, VAE, SAE, probes and export. Modules that need torch import it
themselves, so importing this package (and the CLI) stays light."""
