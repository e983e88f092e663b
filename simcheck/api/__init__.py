"""The entry points that take what a user holds (a run directory, a `Run` or a model):
`check` (`check`), `check_positions` for tasks with targets at many positions (`roles`),
`record` and `bounds`. They resolve the subject (`simcheck.storage.subjects`) and hand it to
the analysis."""
