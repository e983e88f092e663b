"""Models and running them: simcheck's `HookedTransformer` (`build`), its positional
encodings (`positions`), the fused training forward (`fused`), query-blocked attention
(`chunked`), input guards (`inputs`), models of one's own (`loading`), what simcheck needs
of a model (`subject.Subject`), and recording internal states (`recording`)."""
