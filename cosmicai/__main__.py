"""``python -m cosmicai``: the same as the ``cosmicai`` console script."""

from cosmicai.cli import main

raise SystemExit(main())
