"""The training loop shared by SD and SDXL, and the pieces it calls."""
