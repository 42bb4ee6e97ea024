"""Lava processes of this toolkit (the soft-reset LIF); models live beside them in models.py,
where Lava's model discovery looks for them."""
from .soft_lif import LIFSoftReset, LIFSoftResetWindowed

__all__ = ["LIFSoftReset", "LIFSoftResetWindowed"]
