"""Model zoo: ANN (``ann.py``) and SNN (``snn.py``) builders, and the recipes that train them (``recipes/``)."""
