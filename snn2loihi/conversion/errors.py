"""Errors of the converter."""
from __future__ import annotations

from ..errors import Snn2LoihiError


class ConversionError(Snn2LoihiError):
    """An ANN cannot be converted as asked (unsupported layer, structure or option)."""
