"""The performance study: the bench sweep, its results table and report, plots, one run's report, the cost projection."""
