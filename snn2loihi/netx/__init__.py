"""netx HDF5 I/O: :func:`read_network` and :func:`write_network` (format: docs/netx_format.md)."""
from .reader import read_network
from .writer import write_network

__all__ = ["read_network", "write_network"]
