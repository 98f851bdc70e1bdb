"""Import a script from tools/ as a module, so tests call its main() in-process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[2] / "tools"

# The README's main job (tools/demo.py) shortened to fit CI; the full default run is measured in docs/quickstart.md.
# Short runs swing: 120 and 160 steps scored 0.78 and 0.67 on 64 samples, 200 steps 0.97.
TOY_DEMO_STEPS = 200


def load_tool(name: str) -> ModuleType:
    """tools/<name>.py as a module named <name>_tool (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_tool", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module
