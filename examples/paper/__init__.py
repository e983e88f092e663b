"""The pieces of ``examples/paper_figures.py``, one job each.

- `paper.sweeps`: the three sweep specs (shrunk by ``--quick``) and running them;
- `paper.tables`: a sweep's finished rows with what the runs logged beside them;
- `paper.stats`: curve families, means and ranges over seeds, loss curves;
- `paper.trends`: checked statements that a mean falls or rises, or stays flat;
- `paper.attention`: Figure 3's data, the attention of trained ModPTask(p=5) models;
- `paper.figures`: the four figures;
- `paper.report`: the markdown report's sections.
"""
