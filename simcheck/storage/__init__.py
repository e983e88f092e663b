"""Run directories: what training leaves on disk and how a run, a path or a model becomes a
`simcheck.model.subject.Subject` (`runs`, `subjects`). The analysis (`simcheck.checking`,
`simcheck.theory`) never imports this package: it takes a subject."""
