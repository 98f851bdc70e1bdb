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


def load_torch_file(path: Path, source: str | None = None, mmap: bool = False) -> object:
    """The object a torch pickle holds, if it is made of tensors and plain containers only.

    Every pickle the suite reads goes through here (embeddings, single-file models, state folders), so a refused
    file gets the same one-line message wherever it is met.
    """
    source = source or str(path)
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise UserError(refusal(source, err)) from None
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{source}: cannot be read as a torch file; it is truncated or corrupt ({reason})") from None


def is_refused_pickle(err: BaseException) -> bool:
    """Whether an exception (possibly wrapped by diffusers/transformers) is torch's weights_only refusal."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in str(err):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def refusal(source: str, err: BaseException | str) -> str:
    """The one-line refusal of a pickle that needs more than tensors and plain containers."""
    message = str(err)
    found = _GLOBAL_IN_MESSAGE.search(message)
    if found:
        return (
            f"{source}: refused: the file's pickle needs the Python object '{found.group(1)}', which is not a tensor "
            "or plain container; loading it would run code from the file, so it is not loaded "
            "(use a .safetensors copy from a source you trust)"
        )
    detail = next((line.split("error:", 1)[1].strip() for line in message.splitlines() if "WeightsUnpickler error:" in line), None)
    if detail:
        return f"{source}: refused: the file's pickle is not plain tensors and containers ({detail}); it is not loaded"
    if "Weights only load failed" in message:
        return f"{source}: refused: the file's pickle is not plain tensors and containers; it is not loaded"
    reason = message.splitlines()[0] if message else "unreadable pickle"
    return f"{source}: cannot be read as a torch file; it is truncated or corrupt ({reason})"
