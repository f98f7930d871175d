"""A small C kernel for NasN's cells on the CPU, compiled on first use (issue #8).

``fused_pointwise.c`` evaluates ``outputs = [ReLU](bias + sum(adds) + W^T concat_i f_i(x_i))``
per pixel of channels-last float32 images, where ``f_i`` is a depthwise convolution of the
(optionally rectified) input ``x_i`` or the input itself. One call covers a whole NasN node
(each operation's depthwise + pointwise convolutions, the skip edges, the raw and the rectified
output) or every 1x1 convolution that reads a cell's output, so each is one pass over memory
instead of one per convolution, addition and ReLU (``backend/models/fast.py`` uses it).
``depthwise_grad.c`` and ``pointwise_grad.c`` are the training plan's passes of the depthwise
and 1x1 convolutions (``backend/models/training_plan.py``), loaded by :mod:`.gradients`.

The source is compiled once per machine with the C compiler (``$CC``, else ``cc``) and
:data:`FLAGS` into ``$XDG_CACHE_HOME/napari-nascsmri/kernels`` (``~/.cache`` by default), named
by a hash of the source, the flags and the compiler's version. OpenMP resolves to the
``libgomp.so.1`` torch has already loaded, so the kernel runs on torch's threads
(``torch.get_num_threads()`` of them).

``NASCSMRI_KERNELS`` chooses: ``auto`` (default) uses the kernel where it was compiled with its
AVX-512 or AVX2 + FMA paths (the machines it was measured on: ``bench/head_to_head.py``; on a
Zen 3 EPYC with AVX2 the kernel's cascade was 2% faster than the oneDNN plan, 226.8 vs 231.4 ms
at 320x320, where the plain C loops were 1.6x slower), ``1`` wherever it compiles (plain C
loops elsewhere: correct, not tuned), ``0`` never. Without the
kernel, :func:`fused_pointwise` returns ``None`` and the callers run oneDNN convolutions
instead (the same sums in another order).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("fused_pointwise.c")
GRAD_SOURCE = Path(__file__).with_name("depthwise_grad.c")
POINTWISE_GRAD_SOURCE = Path(__file__).with_name("pointwise_grad.c")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
ABI_VERSION = 2
MAX_K, MAX_CPAD = 1024, 512  # the C source's limits on input and padded output channels
PLANES_MAX_K = 256  # the widest input of the C source's planes path (AVX-512, AVX2; wider calls take the other path)


class _Input(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("channels", ctypes.c_int64), ("relu", ctypes.c_int64),
                ("dw", ctypes.c_void_p), ("kh", ctypes.c_int64), ("kw", ctypes.c_int64),
                ("dil_h", ctypes.c_int64), ("dil_w", ctypes.c_int64)]


class _Output(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("channels", ctypes.c_int64), ("offset", ctypes.c_int64),
                ("relu", ctypes.c_int64), ("plane", ctypes.c_int64)]


class KernelError(RuntimeError):
    """The compiled kernel refused its arguments (a bug in the caller, not in the input data)."""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-nascsmri" / "kernels"


def _machine() -> str:
    """What ``-march=native`` compiles for: the CPU's feature flags (a cache shared between
    machines must not hand one CPU's build to another)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags.strip()}"


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def build(cc: str, extra_flags: tuple[str, ...] = (), directory: Path | None = None,
          source: Path = SOURCE) -> Path:
    """Compile a kernel source (once per source, flags, compiler and CPU); return the library's path.

    ``extra_flags`` follow :data:`FLAGS` (the tests build a ``-mno-avx512f`` variant this way);
    ``directory`` defaults to the cache directory; ``source`` is :data:`SOURCE` (the fused
    inference kernel), :data:`GRAD_SOURCE` (the training plan's depthwise weight gradient) or
    :data:`POINTWISE_GRAD_SOURCE` (its 1x1 convolutions' backward).
    """
    flags = [*FLAGS, *extra_flags]
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = "\0".join([source.read_text(), " ".join(flags), version, _machine()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = (directory or _cache_dir()) / f"{source.stem}-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run([cc, *flags, "-o", tmp, str(source)], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{cc} failed: {result.stderr.strip()[-2000:]}")
        os.replace(tmp, target)  # atomic: a concurrent process sees no file or the whole file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class FusedPointwise:
    """The loaded kernel. :meth:`run` checks shapes and layouts before handing pointers to C."""

    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        if lib.fp_abi_version() != ABI_VERSION:
            raise RuntimeError(f"{path} has ABI {lib.fp_abi_version()}, expected {ABI_VERSION}")
        self.vector_bits = lib.fp_vector_bits()
        lib.fp_run.restype = ctypes.c_int
        lib.fp_run.argtypes = [
            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(_Input), ctypes.c_int64,
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
            ctypes.c_int64, ctypes.POINTER(_Output), ctypes.c_int64]
        self._run = lib.fp_run
        self.path = path

    @staticmethod
    def _check(t: torch.Tensor, h: int, w: int, what: str, planes: bool = False) -> int:
        """0 for a dense channels-last ``(1, C, h, w)`` float32 CPU tensor; with ``planes``,
        the plane stride of one whose channels are planes of dense rows (e.g. a row window of
        a contiguous tensor); else :class:`KernelError`."""
        if t.dtype == torch.float32 and t.device.type == "cpu" and t.dim() == 4 and t.shape[0] == 1 \
                and tuple(t.shape[-2:]) == (h, w):
            if t.is_contiguous(memory_format=torch.channels_last):
                return 0
            if planes and t.stride(3) == 1 and t.stride(2) == w and t.stride(1) >= h * w:
                return t.stride(1)
        raise KernelError(f"{what}: need a dense channels-last float32 CPU tensor (1, C, {h}, {w})"
                          f"{' or one of channel planes' if planes else ''}, got {tuple(t.shape)} {t.dtype} "
                          f"strides {t.stride()}")

    def run(self, inputs: list[tuple[torch.Tensor, bool, torch.Tensor | None, tuple[int, int]]],
            weight: torch.Tensor, outputs: list[tuple[torch.Tensor, int, bool]],
            adds: list[torch.Tensor] = (), bias: torch.Tensor | None = None) -> None:
        """Write the outputs.

        Args:
            inputs: ``(x, relu, taps, geometry)`` per input: ``x`` (1, C_i, H, W), read through
                a ReLU if ``relu``; ``taps`` a depthwise kernel as :func:`depthwise_taps` gives
                it, ``geometry`` its ``((kh, kw), (dilation_h, dilation_w))`` ("same" zero
                padding); ``taps=None`` = the input itself.
            weight: ``(K, cpad)``, K = sum of C_i, cpad a multiple of 32.
            outputs: ``(y, offset, relu)``: ``y`` (1, C_o, H, W), channels last or channel
                planes (a row window of a contiguous tensor), receives the accumulator's
                channels ``offset:offset + C_o``, rectified if ``relu``.
            adds: tensors (1, C_a, H, W) added to the accumulator's first C_a channels.
            bias: ``(cpad,)`` or None.
        """
        h, w = inputs[0][0].shape[-2:]
        cin = (_Input * len(inputs))()
        for slot, (x, relu, taps, geometry) in zip(cin, inputs):
            self._check(x, h, w, "input")
            slot.data, slot.channels, slot.relu = x.data_ptr(), x.shape[1], int(relu)
            if taps is not None:
                (kh, kw), (dh, dw) = geometry
                if min(kh, kw, dh, dw) < 1 or kh % 2 == 0 or kw % 2 == 0:
                    raise KernelError(f"depthwise {kh}x{kw} with dilation {dh}x{dw}: need odd sizes and "
                                      f"dilations >= 1 ('same' zero padding)")
                if taps.shape != (kh * kw, x.shape[1]) or not taps.is_contiguous() or taps.dtype != torch.float32:
                    raise KernelError(f"depthwise taps {tuple(taps.shape)} do not match {kh}x{kw} "
                                      f"over {x.shape[1]} channels")
                slot.dw, slot.kh, slot.kw, slot.dil_h, slot.dil_w = taps.data_ptr(), kh, kw, dh, dw
        k = sum(x.shape[1] for x, *_ in inputs)
        cpad = weight.shape[1]
        if (weight.shape[0] != k or cpad % 32 or not weight.is_contiguous() or weight.dtype != torch.float32
                or k > MAX_K or cpad > MAX_CPAD):
            raise KernelError(f"weight {tuple(weight.shape)} does not fit inputs of {k} channels")
        if bias is not None and (bias.shape != (cpad,) or not bias.is_contiguous()):
            raise KernelError(f"bias {tuple(bias.shape)} is not ({cpad},)")
        add_channels = adds[0].shape[1] if adds else 0
        cadds = (ctypes.c_void_p * max(len(adds), 1))()
        for i, a in enumerate(adds):
            self._check(a, h, w, "addend")
            if a.shape[1] != add_channels:
                raise KernelError("addends differ in channels")
            cadds[i] = a.data_ptr()
        cout = (_Output * len(outputs))()
        for slot, (y, offset, relu) in zip(cout, outputs):
            slot.plane = self._check(y, h, w, "output", planes=True)
            if offset < 0 or offset + y.shape[1] > cpad:
                raise KernelError(f"output channels {offset}:{offset + y.shape[1]} outside the {cpad} computed")
            slot.data, slot.channels, slot.offset, slot.relu = y.data_ptr(), y.shape[1], offset, int(relu)
        reads = [x for x, *_ in inputs] + list(adds)
        written = [y for y, *_ in outputs]
        for i, y in enumerate(written):
            if any(_overlap(y, t) for t in reads + written[:i]):
                raise KernelError("an output shares memory with an input or another output")
        rc = self._run(h, w, len(inputs), cin, len(adds), cadds, add_channels, weight.data_ptr(),
                       None if bias is None else bias.data_ptr(), cpad, len(outputs), cout,
                       torch.get_num_threads())
        if rc != 0:
            raise KernelError(f"fused_pointwise refused its arguments (code {rc})")


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of two strided tensors intersect."""
    def span(t: torch.Tensor) -> tuple[int, int]:
        last = sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
        return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()
    (a0, a1), (b0, b1) = span(a), span(b)
    return a0 < b1 and b0 < a1


MODES = ("auto", "0", "1")
_LOADED: dict[str, object | None] = {}


def _mode() -> str:
    mode = os.environ.get("NASCSMRI_KERNELS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"NASCSMRI_KERNELS must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def _load(name: str, source: Path, wrapper, fallback: str):
    """The wrapped library built from ``source``, loaded once per process; ``None`` (with one
    warning naming ``fallback``, what runs instead) when it cannot be built or loaded."""
    if name not in _LOADED:
        _LOADED[name] = None
        cc = _compiler()
        if cc is None:
            warnings.warn(f"no C compiler found (cc, or $CC): {fallback}", RuntimeWarning)
        else:
            try:
                _LOADED[name] = wrapper(build(cc, source=source))
            except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as exc:
                warnings.warn(f"the {name} kernel is not available ({exc}); {fallback}", RuntimeWarning)
    return _LOADED[name]


def fused_pointwise() -> FusedPointwise | None:
    """The compiled kernel, or ``None`` (see the module docstring for ``NASCSMRI_KERNELS``).

    Compiles on the first call of a process when the library is not cached yet (about a
    second); a failure is reported once as a warning and the callers use their oneDNN path.
    """
    mode = _mode()
    if mode == "0":
        return None
    kernel = _load("kernel", SOURCE, FusedPointwise, "NasN runs its oneDNN plan")
    if kernel is not None and mode == "auto" and kernel.vector_bits < 256:
        return None
    return kernel


def _entry(path: Path, prefix: str, abi: int, name: str, argtypes: list):
    """The C function ``name`` of the library at ``path`` (returning int, taking ``argtypes``),
    after checking that its ``PREFIX_abi_version()`` is ``abi``."""
    lib = ctypes.CDLL(str(path))
    found = getattr(lib, f"{prefix}_abi_version")()
    if found != abi:
        raise RuntimeError(f"{path} has ABI {found}, expected {abi}")
    function = getattr(lib, name)
    function.restype, function.argtypes = ctypes.c_int, argtypes
    return function


def depthwise_taps(conv: torch.nn.Conv2d | torch.Tensor) -> torch.Tensor:
    """A depthwise convolution's kernel ``(C, 1, kh, kw)`` (the module or its weight) as
    ``(kh * kw, C)``, tap-major: how the C kernels read it."""
    weight = (conv.weight if isinstance(conv, torch.nn.Module) else conv).detach()
    return weight[:, 0].permute(1, 2, 0).reshape(-1, weight.shape[0]).contiguous()
