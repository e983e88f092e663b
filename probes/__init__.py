"""simcheck.probes: read internal states of a model at chosen query positions."""
