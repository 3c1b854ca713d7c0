"""``python -m cosmicai``: the same as the ``cosmicai`` console script."""

from cosmicai.cli import entry

entry()
