"""A procedural toy image world, its pixel classifier, and the small SD-architecture model trained on it."""
