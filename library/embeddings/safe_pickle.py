"""Reading torch pickles (.pt, .bin, .ckpt) without running code from the file.

`torch.load(weights_only=True)` rebuilds only tensors, storages and plain containers; a file that names any
other Python object is refused. The one object added to its allow-list is `torch.nn.ParameterDict`, which the
original textual_inversion code pickled as `string_to_param`: rebuilding it sets attributes on an empty
module and runs nothing from the file. Tensors saved on a GPU are mapped to the CPU.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from library.errors import UserError

ALLOWED_GLOBALS = [torch.nn.ParameterDict]

_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL ([\w.]+)")


def load_torch_file(path: Path, source: str | None = None) -> object:
    """The object a torch pickle holds, if it is made of tensors and plain containers only."""
    source = source or str(path)
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(_refusal(source, str(err))) from None
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{source}: cannot be read as a torch file; it is truncated or corrupt ({reason})") from None


def _refusal(source: str, message: str) -> str:
    found = _GLOBAL_IN_MESSAGE.search(message)
    if found:
        return (
            f"{source}: refused: the file's pickle needs the Python object '{found.group(1)}', which is not a tensor "
            "or plain container; loading it would run code from the file, so it is not loaded"
        )
    detail = next((line.split("error:", 1)[1].strip() for line in message.splitlines() if "WeightsUnpickler error:" in line), None)
    if detail:
        return f"{source}: refused: the file's pickle is not plain tensors and containers ({detail}); it is not loaded"
    if "Weights only load failed" in message:
        return f"{source}: refused: the file's pickle is not plain tensors and containers; it is not loaded"
    reason = message.splitlines()[0] if message else "unreadable pickle"
    return f"{source}: cannot be read as a torch file; it is truncated or corrupt ({reason})"
