"""Textual Inversion training suite for Stable Diffusion 1.x, 2.x and SDXL."""

import logging as _logging

__version__ = "0.1.0"


class _DropTorchvisionFallbackNotice(_logging.Filter):
    """torchvision is deliberately not a dependency (it breaks beside the CPU torch build); transformers then notes
    at every diffusers pipeline import that its image processors fall back to PIL. Nothing here uses them."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


_logging.getLogger("transformers.utils.import_utils").addFilter(_DropTorchvisionFallbackNotice())
