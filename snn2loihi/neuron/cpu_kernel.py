"""The compiled CPU time loop of the fused neuron (``lif_kernel.cpp``), built on first use.

The PyTorch loop of :mod:`snn2loihi.neuron.fused` launches about twenty full-tensor
operations per time step (forward and backward together), each a pass over memory; the
C++ loop makes one pass per direction with the same arithmetic in the same order, so its
spikes and gradients equal the PyTorch loop's bit for bit (tested). It is compiled with
``-ffp-contract=off`` (no fused multiply-adds) and ``-fno-trapping-math`` (results are
unchanged; it lets the compiler turn the loops' selects into vector blends).

It is compiled with ``torch.utils.cpp_extension`` (a C++ compiler and ninja are needed; the
build is cached in ``$TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``).
``SNN2LOIHI_NEURON_KERNEL`` selects the implementation:

- ``auto`` (default): the compiled loop for CPU tensors when it builds, else the PyTorch
  loop (with one warning naming the build error);
- ``cpp``: the compiled loop, or an error if it cannot be built;
- ``torch``: always the PyTorch loop (no compiler needed).
"""
from __future__ import annotations

import os
import platform
import warnings
from types import ModuleType
from typing import Optional

ENV = "SNN2LOIHI_NEURON_KERNEL"
MODES = ("auto", "cpp", "torch")
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lif_kernel.cpp")
_built: dict = {}


def mode() -> str:
    """The implementation requested by ``$SNN2LOIHI_NEURON_KERNEL`` (default ``auto``)."""
    value = os.environ.get(ENV, "auto")
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}: expected one of {MODES}")
    return value


def _target() -> tuple:
    """(module name, instruction-set flags): AVX2 where PyTorch itself runs AVX2 or AVX-512
    kernels on this CPU, so the loops' rounding (``trunc``) vectorizes; the name keeps builds
    for different targets apart in a shared extension cache."""
    import torch

    if platform.machine().lower() in ("x86_64", "amd64") and torch.backends.cpu.get_cpu_capability() in ("AVX2",
                                                                                                          "AVX512"):
        return "snn2loihi_lif_kernel_avx2", ["-mavx2"]
    return "snn2loihi_lif_kernel", []


def compiled() -> Optional[ModuleType]:
    """The compiled module, or None where the PyTorch loop is to be used."""
    requested = mode()
    if requested == "torch":
        return None
    if "module" not in _built:
        try:
            from torch.utils.cpp_extension import load

            # -fopenmp only when compiling: GOMP_* then bind to the OpenMP runtime torch already
            # loaded. Linking the system libgomp as well gave two thread pools spinning against
            # each other (slower than the PyTorch loop on 2 threads).
            name, isa = _target()
            _built["module"] = load(name=name, sources=[SOURCE],
                                    extra_cflags=["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp"] + isa,
                                    verbose=False)
        except Exception as exc:  # no compiler, no ninja, headers missing: all mean "fall back"
            _built["module"] = None
            _built["error"] = f"{type(exc).__name__}: {exc}".strip()[:500]
            if requested == "auto":
                warnings.warn(f"snn2loihi: the compiled neuron loop could not be built ({_built['error']}); "
                              f"using the PyTorch loop (set {ENV}=torch to silence this)", RuntimeWarning)
    if _built["module"] is None and requested == "cpp":
        raise RuntimeError(f"{ENV}=cpp but the compiled neuron loop could not be built: {_built.get('error')}")
    return _built["module"]
