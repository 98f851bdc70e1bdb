"""AUTOMATIC1111's safe-unpickle check, written down as data, and a checker that applies it to a file.

A1111 runs this check on every `.pt`/`.bin` before `torch.load` unless started with --disable-safe-unpickle; a
file that fails is skipped with "Error verifying pickled file ... The file may be malicious". The rule, as
modules/safe.py states it (AUTOMATIC1111/stable-diffusion-webui, commit 05933840f0676dd1a90a7e2ad3f2a0672624b2cd,
the v1.10 line; same rule since early 2023):

- a zip file (torch's format since 1.6): every entry name must match ZIP_NAME_PATTERN (one top folder holding
  data.pkl, version and data/<number> only), and exactly one data.pkl is unpickled with the restricted unpickler;
- any other file (torch's legacy format): the first LEGACY_PICKLES pickles of the stream are unpickled with the
  restricted unpickler;
- the restricted unpickler resolves only the globals in ALLOWED_GLOBALS; any other global refuses the file.

OLD_ZIP_NAME_PATTERN is the stricter rule of the first versions (late 2022), which required the folder to be
`archive`; web UI forks of that time still carry it. This checker only reads the file: it never calls any
global (allowed ones become inert stand-ins), so it is safe on any input.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path

SOURCE = "AUTOMATIC1111/stable-diffusion-webui modules/safe.py @ 05933840f0676dd1a90a7e2ad3f2a0672624b2cd"
ZIP_NAME_PATTERN = re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$")
OLD_ZIP_NAME_PATTERN = re.compile(r"^archive/(data\.pkl|version|data/\d+)$")
DATA_PKL_PATTERN = re.compile(r"^([^/]+)/data\.pkl$")
LEGACY_PICKLES = 5
ALLOWED_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        *(("torch", n) for n in ("FloatStorage", "HalfStorage", "IntStorage", "LongStorage", "DoubleStorage", "ByteStorage", "float32", "BFloat16Storage")),
        ("torch.nn.modules.container", "ParameterDict"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("_codecs", "encode"),
        ("pytorch_lightning.callbacks", "model_checkpoint"),
        ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
        ("__builtin__", "set"),
    }
)


class _Inert:
    """Stands in for an allowed global: calling or indexing it builds nothing."""

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __setstate__(self, state):
        pass


class _RuleUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return _Inert()
        raise pickle.UnpicklingError(f"global '{module}/{name}' is forbidden")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise pickle.UnpicklingError(f"persistent id {saved_id!r} is not a storage")
        return None


def a1111_refusal(path: str | Path, *, names_pattern: re.Pattern = ZIP_NAME_PATTERN) -> str | None:
    """Why A1111 would refuse the file, or None when it would load it."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            bad = [n for n in names if not names_pattern.match(n)]
            if bad:
                return f"bad file inside {path.name}: {bad[0]}"
            pkls = [n for n in names if DATA_PKL_PATTERN.match(n)]
            if len(pkls) != 1:
                return f"{len(pkls)} data.pkl in {path.name}"
            streams = [io.BytesIO(z.read(pkls[0]))]
            count = 1
    except zipfile.BadZipFile:
        streams = [io.BytesIO(path.read_bytes())]
        count = LEGACY_PICKLES
    try:
        unpickler = _RuleUnpickler(streams[0])
        for _ in range(count):
            unpickler.load()
    except (pickle.UnpicklingError, EOFError) as err:
        return str(err) or type(err).__name__
    return None
