"""Short witnesses for long inputs: the constructions behind the simulation argument.

For a long input x (n tokens) and a training length N, a *witness* is a sequence z with
``len(z) <= N`` that a limit transformer should treat like x. If f and g agree on every input
of length <= N, then f(x) ~ f(z) ~ g(z) ~ g(x). This module only *builds* candidate witnesses
(plus a generic local search driven by a caller's objective); judging them with a model is the
caller's job. Positions are 0-based and the last position, n-1, is the query.

`Structure` holds what the model class makes relevant: the positional ``period`` Delta (only
``position mod Delta`` matters outside the local window), the ``window`` tau (the last tau+1
tokens are kept verbatim), the shortest admissible witness and the vocabulary size. Lengths
are `admissible_lengths`: between the bounds and congruent to n mod Delta, so the query keeps
its residue and, with it, every position keeps its residue relative to the end.

Constructions
-------------
- **Types** (`types_witness`, `types_witnesses`; Thm 4.1, deterministic). Outside the window a
  one-layer finite-precision model sees only the proportions of the *types* (position mod
  Delta, token). The witness is a prefix followed by x's window; the prefix slots of residue r
  get tokens in the proportions x has within residue class r. Counts are rounded by the
  **largest-remainder** method (floors first, then one extra token to the largest remainders,
  ties to the smaller token id), which makes them sum exactly to the slots and keeps each
  within 1 of its exact share. Within a class the tokens are placed in a **low-discrepancy**
  order (at each slot, the token whose count lags its target share most, ties to the smaller
  id, as in Bresenham's line algorithm), so every prefix of the class keeps the proportions
  too: the prefix histograms a later layer sees stay close to x's. Choosing the length is
  part of the construction: `types_witnesses` returns one witness per admissible length and
  `types_witness` picks the one with the smallest `type_error` (ties to the longer).
- **Blocks** (`blocks_witnesses`; Lemma 5.3, randomized). Keep contiguous blocks of x and the
  final window, so most local windows and the prefix histograms survive. A two-state
  keep/skip Markov chain has geometric sojourn times; conditioned on keeping exactly the
  target number of tokens in k blocks, its block lengths are a uniformly random composition,
  and that conditioned chain is what is sampled, so every candidate has exactly its target
  length. Skips are whole multiples of Delta, so kept tokens keep their residue relative to
  the end. The **mean kept block length** is ``b = max(tau + 1, round(m ** (1/3)))`` for a
  target length m: each of the about m/b block joins breaks up to tau windows (an error of
  about tau/b) while fewer, longer blocks sample x's histogram more coarsely; the cube root
  balances the two as in the paper's (tau + 1)/n^(1/3) bound. Existence is by the
  probabilistic method, so several candidates are drawn and the caller keeps the best.
- **User functions** (`user_witnesses`): any function of (x, max_length, structure, rng)
  that returns sequences; they are validated.

Every method a check can name is declared once in `registry` (its name, what it builds, the
settings it reads, a line of help); `register_witness` adds one. ``"search"`` is not a
construction but a refinement of the constructed witnesses that needs the caller's objective.
- **Search** (`local_search`, `local_search_many`): a model-agnostic bounded local search over
  short strings. Each round proposes single edits of the current best (a substitution, an
  insertion or a deletion, each at a uniformly random position and with uniformly random new
  tokens), scores them with one objective call and moves to the best if it strictly improves;
  it stops after 3 rounds without improvement. With ``keep_window`` the last tau+1 tokens are
  never edited; given the long input x, insertions and deletions move Delta tokens at once so
  the length keeps its residue mod Delta.

Modules: `base` (`Structure`, `Witness`, type counts, admissible lengths), `types`, `blocks`,
`user` (a user's function, validated), `search` (the local search) and `registry` (the
methods by name). This package imports no torch.
"""

from simcheck.checking.witnesses.base import (
    Construction,
    Objective,
    ObjectiveMany,
    Structure,
    Witness,
    WitnessFn,
    admissible_lengths,
    type_counts,
    type_error,
)
from simcheck.checking.witnesses.blocks import blocks_witnesses
from simcheck.checking.witnesses.registry import (
    WitnessContext,
    WitnessMethod,
    register_witness,
    witness_method,
    witness_methods,
)
from simcheck.checking.witnesses.search import local_search, local_search_many
from simcheck.checking.witnesses.types import largest_remainder, types_witness, types_witnesses
from simcheck.checking.witnesses.user import user_witnesses, witness_name

__all__ = [
    "Construction",
    "Objective",
    "ObjectiveMany",
    "Structure",
    "Witness",
    "WitnessContext",
    "WitnessFn",
    "WitnessMethod",
    "admissible_lengths",
    "blocks_witnesses",
    "largest_remainder",
    "local_search",
    "local_search_many",
    "register_witness",
    "type_counts",
    "type_error",
    "types_witness",
    "types_witnesses",
    "user_witnesses",
    "witness_method",
    "witness_methods",
    "witness_name",
]
