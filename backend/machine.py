"""What machine a measurement ran on: CPU model, vector extensions, threads, library versions.

Speed results of different CPUs differ (issue #17: the fused kernel's lead on one AMD EPYC was
a loss on another), so every benchmark records :func:`describe` and names its result file with
:func:`slug`, which keeps results of different machines side by side instead of overwriting
each other.
"""

from __future__ import annotations

import os
import platform
import re

#: CPU feature flags that decide which kernels and which speed to expect.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
             "amx_bf16", "amx_int8", "asimd", "sve")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    key, value = (part.strip() for part in line.split(":", 1))
                    info.setdefault(key, value)
                elif info:  # the first processor's block is enough
                    break
    except OSError:
        pass
    return info


def describe() -> dict:
    """The CPU (model name, vendor, family/model/stepping), its ISA flags from
    :data:`ISA_FLAGS`, logical CPUs, torch's threads and the versions of Python and torch."""
    import torch

    info = _cpuinfo()
    flags = set(info.get("flags", info.get("Features", "")).split())
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "vendor": info.get("vendor_id", ""),
        "family_model_stepping": "/".join(info.get(k, "?") for k in ("cpu family", "model", "stepping")),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "slug": slug(info, flags),
    }


def slug(info: dict[str, str] | None = None, flags: set[str] | None = None) -> str:
    """A file-name part naming the CPU, e.g. ``amd-epyc-f26m2-avx512`` or ``intel-xeon-platinum-8488c-f6m143-amx``."""
    if info is None:
        info = _cpuinfo()
    if flags is None:
        flags = set(info.get("flags", info.get("Features", "")).split())
    name = (info.get("model name") or platform.processor() or platform.machine()).lower()
    name = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$|\d+-core", " ", name)
    words = [w for w in re.split(r"[^a-z0-9]+", name) if w]
    family = f"f{info['cpu family']}m{info['model']}" if "cpu family" in info and "model" in info else ""
    isa = "amx" if "amx_tile" in flags else "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else \
        "sve" if "sve" in flags else "neon" if "asimd" in flags else "base"
    return "-".join([*words[:5], *([family] if family else []), isa])
