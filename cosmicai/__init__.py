"""The ``cosmicai`` command and what it drives on the host: targets, deploy, runs, the performance study."""
