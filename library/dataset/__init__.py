"""Datasets: sd-scripts dataset TOML, captions, aspect-ratio buckets, latent cache, --debug_dataset."""
