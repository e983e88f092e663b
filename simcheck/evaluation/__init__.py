"""Evaluation across test lengths: loss, error and baseline per length and per length bin,
the plateau, tables and figures (`evaluation`)."""
