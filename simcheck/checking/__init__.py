"""The simulation check, on a `simcheck.model.subject.Subject`: its settings (`config`), the
witnesses (`witnesses`), the chain's terms (`chain`), confidence (`confidence`), statistics
(`statistics`), the five outcomes (`outcomes`), the check itself (`checker`), the diagnosis
(`diagnosis`), interventions that confirm it (`interventions`, `effects`), and ranges of
lengths with their forecast (`forecast`). `config`, `witnesses` and `outcomes` import no
torch."""
