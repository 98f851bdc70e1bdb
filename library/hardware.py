"""What this machine's CPU can do fast: bf16 is only worth using on CPUs with native bf16 instructions."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# x86 flags that give bf16 matrix math in hardware (Linux /proc/cpuinfo names). Without them PyTorch emulates bf16,
# which on CPUs without AVX-512 was measured at about 100x slower than fp32 (VAE encoding: 630 s per image).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where it cannot be read, e.g. macOS or Windows)."""
    try:
        return parse_cpu_flags(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return frozenset()


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The first `flags` (x86) or `Features` (Arm) line of a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags") or line.startswith("Features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """True where bf16 runs in hardware on the CPU (AVX512-BF16 or AMX on x86; Arm CPUs with the bf16 feature)."""
    flags = cpu_flags() if flags is None else flags
    if (machine or platform.machine()).lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return bool(flags & NATIVE_BF16_FLAGS)
