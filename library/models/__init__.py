"""Model loading: diffusers directories, single-file checkpoints, bundled configs, tiny test models."""
