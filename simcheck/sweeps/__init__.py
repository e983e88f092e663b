"""Sweeps: grids of points trained, evaluated and checked (`spec`, `runner`), and the
results table with the measured N* (`table`)."""
