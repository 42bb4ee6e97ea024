"""keep_freed_memory: once warmed up, a training-like loop of large tensors reuses freed
pages instead of page-faulting fresh ones every step (glibc's default)."""
import os
import subprocess
import sys

import pytest

from snn2loihi import allocator

# Each "step" writes four tensors of 52, 12, 52 and 24 MiB (a conv layer's time-folded
# current at T = 8 is 51 MiB) and frees them; printed: minor page faults per step.
PROBE = """
import resource, torch
from snn2loihi.allocator import keep_freed_memory
applied = keep_freed_memory()
def step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    kept = [torch.empty(n).fill_(1.0) for n in (13 << 20, 3 << 20, 13 << 20, 6 << 20)]
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, *[step() for _ in range(16)])
"""


def _probe(setting: str):
    env = dict(os.environ, **{allocator.ENV: setting})
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    applied, *faults = out.stdout.split()
    return applied == "True", [int(f) for f in faults]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt and minor-fault counts: glibc/Linux")
def test_large_tensors_reuse_freed_pages_after_warm_up():
    applied, faults = _probe("1")
    if not applied:
        pytest.skip("not glibc: nothing to tune")
    default_applied, default_faults = _probe("0")
    assert not default_applied
    assert min(default_faults[-3:]) > 10_000  # default: blocks above 32 MiB are mmapped and fault anew each step
    assert sum(faults[-3:]) < 1_000          # kept: the heap's freed blocks are reused
