"""Lazy imports of optional packages with a clear message when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from library.errors import MissingDependencyError

# package to import -> (pip name, install hint)
_INSTALL_HINTS = {
    "bitsandbytes": ("bitsandbytes", "pip install bitsandbytes  (CUDA GPUs only)"),
    "xformers": ("xformers", "pip install xformers  (must match your CUDA torch build)"),
    "lion_pytorch": ("lion-pytorch", "pip install lion-pytorch"),
    "prodigyopt": ("prodigyopt", "pip install prodigyopt"),
    "schedulefree": ("schedulefree", "pip install schedulefree"),
    "dadaptation": ("dadaptation", "pip install dadaptation"),
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "wandb": ("wandb", "pip install wandb"),
}


def require(module: str, needed_for: str) -> ModuleType:
    """Import `module` or raise MissingDependencyError naming the package and what needed it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package, hint = _INSTALL_HINTS.get(module, (module, None))
        raise MissingDependencyError(package, needed_for, hint) from err
