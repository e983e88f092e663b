"""The `Task` base class: a data generator with an exact oracle at any length.

A task is what the simulation criterion calls f. It must answer for *every* token
sequence, not only the ones it samples, because the analyzer evaluates it on witness
strings it builds itself. Subclass `Task`, set `name` and `vocab_size`, and implement
`sample` and `oracle`; everything else has a default.

Conventions used by every task in simcheck:

- Positions are **0-based**: the first token of a sequence is at position 0.
- The target belongs to the **last position** of the sequence.
- `oracle` is vectorised over a batch of equal-length sequences, shape [batch, length].
- Randomness comes from a `numpy.random.Generator` passed in, so the same seed always
  gives the same data (numpy has Beta and Dirichlet samplers that take a generator;
  torch's distributions do not).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from simcheck._util.lazy_import import lazy_module
from simcheck.errors import SimcheckError, TaskSpecError, TokenError

torch = lazy_module("torch")

MAX_VOCAB = 1 << 16
"""The most tokens (or data symbols) a built-in task takes: enough for any experiment, few
enough that a typo cannot ask for a model with billions of embedding rows, or for sampled
arrays as wide."""
MAX_PERIOD = 1 << 16
"""The longest period p a built-in task takes: each sequence draws a frequency per residue
class, and a periodic model learns one position per residue."""
F = lazy_module("torch.nn.functional")

OutputKind = Literal["scalar", "distribution", "classes"]
NO_CLASS = -1
"""The oracle's answer for a classification input that has no class (a tie, an empty
count): such rows are left out of losses, accuracies and the check, and counted."""


@dataclass(frozen=True)
class Batch:
    """Token ids [batch, length] and the exact targets for their last position."""

    tokens: torch.Tensor
    targets: torch.Tensor


class Task:
    """Base class for a sequence task with an exact oracle.

    Class attributes a subclass sets:
        name: the registry name (``"modp"``), also used in run directories.
        vocab_size: number of token ids, 0..vocab_size-1 (a property is fine too).
        output: ``"scalar"`` (regression of one number at the last position),
            ``"distribution"`` (a probability vector over ``output_size`` outcomes) or
            ``"classes"`` (a class id in 0..num_classes-1, or `NO_CLASS` where the input
            has none; the model outputs one logit per class).
        num_classes: the number of classes of a ``"classes"`` task (default: the
            vocabulary size).
        value_range: (low, high) of a scalar oracle, when known: eps above high - low
            would make the check vacuous and is refused.
        period: Delta, the period of the positional structure the task needs, or None.
        locality: tau, the width of the local window the task reads, or None.
        min_length: the shortest length `sample` is asked for during training.
        default_layers: layers `simcheck.build_model` uses for this task by default.
        default_pos: positional encoding `simcheck.build_model` uses by default.

    Subclasses written as frozen dataclasses get their parameters (`params`) and their
    registry spec string (`spec`) for free.
    """

    name: ClassVar[str] = "task"
    output: ClassVar[OutputKind] = "scalar"
    period: int | None = None
    locality: int | None = None
    value_range: tuple[float, float] | None = None
    min_length: int = 1
    default_layers: int = 1
    default_pos: str = "learned"
    per_position: ClassVar[bool] = False
    """True for tasks with targets at many positions (`simcheck.tasks.SequenceTask`)."""

    # ----------------------------------------------------------------- to implement
    @property
    def vocab_size(self) -> int:
        """Number of token ids; subclasses set it as a class attribute or a property."""
        raise TaskSpecError(
            f"{type(self).__name__} does not say its vocabulary size: set the class attribute "
            "vocab_size (e.g. vocab_size: ClassVar[int] = 2)"
        )

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> Any:
        """Token ids of shape [batch, length] (numpy or torch, integer) drawn from the task's
        input distribution."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample()")

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        """The exact target for the last position of each row of ``tokens`` [batch, length]:
        shape [batch] for scalar tasks, [batch, output_size] (rows summing to 1) for
        distribution tasks, [batch] integer class ids (`NO_CLASS` for none) for class
        tasks. Must accept any valid token sequence of any length >= 1."""
        raise NotImplementedError(f"{type(self).__name__} must implement oracle()")

    # ----------------------------------------------------------------- defaults
    @property
    def num_classes(self) -> int:
        """Classes of a ``"classes"`` task; by default one per token."""
        return self.vocab_size

    @property
    def output_size(self) -> int:
        """Width of the model's output: 1 for scalar tasks, the number of classes for class
        tasks, the vocabulary size for distributions."""
        if self.output == "scalar":
            return 1
        return self.num_classes if self.output == "classes" else self.vocab_size

    @property
    def metric_name(self) -> str:
        """Name of `metric`: absolute error for scalars, total variation for distributions,
        misclassification (0 or 1) for classes."""
        return {"scalar": "abs_err", "distribution": "tv", "classes": "error"}[self.output]

    @property
    def metric_max(self) -> float:
        """The largest value `metric` can take: 1 for total variation and for
        misclassification, high - low of ``value_range`` for scalars (inf when unknown)."""
        if self.output != "scalar":
            return 1.0
        if self.value_range is None:
            return float("inf")
        low, high = self.value_range
        return float(high - low)

    def params(self) -> dict[str, Any]:
        """The task's constructor parameters (the dataclass fields), for specs and records."""
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {}

    def spec(self) -> str:
        """The registry string that rebuilds this task, e.g. ``"modp:p=3,k=0,alpha=1.0"``."""
        params = ",".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.name}:{params}" if params else self.name

    def __str__(self) -> str:
        return self.spec()

    def batch(self, batch: int, length: int, generator: np.random.Generator) -> Batch:
        """Sample a batch and label it with the oracle."""
        tokens = self.check_tokens(self.sample(batch, length, generator))
        if tokens.shape != (batch, length):
            raise TokenError(
                f"{type(self).__name__}.sample returned shape {tuple(tokens.shape)}, expected "
                f"({batch}, {length}); fix sample() to return [batch, length] token ids"
            )
        return Batch(tokens, self.batch_targets(tokens))

    def batch_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        """The targets a training batch carries: the oracle's, for the last position."""
        return self.oracle(tokens)

    def target(self, tokens: Any) -> torch.Tensor:
        """`oracle` on validated input: accepts a list, a 1-D sequence or a [batch, length]
        array and rejects tokens outside the vocabulary with a clear message."""
        tokens = self.check_tokens(tokens)
        return self.oracle(tokens)

    def check_tokens(self, tokens: Any) -> torch.Tensor:
        """Convert ``tokens`` to a LongTensor [batch, length] and check every id is in range."""
        try:
            tensor = torch.as_tensor(np.asarray(tokens) if isinstance(tokens, list) else tokens)
        except (TypeError, ValueError) as err:
            raise TokenError(
                f"tokens for task '{self.name}' must be an integer array, got {type(tokens)}: {err}"
            ) from None
        if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
            raise TokenError(
                f"tokens for task '{self.name}' must be integers, got dtype {tensor.dtype}; "
                "cast with .long()"
            )
        if tensor.dim() == 1:
            tensor = tensor.unsqueeze(0)
        if tensor.dim() != 2 or tensor.shape[1] == 0:
            raise TokenError(
                f"tokens for task '{self.name}' must have shape [batch, length] with length >= 1, "
                f"got {tuple(tensor.shape)}"
            )
        tensor = tensor.long()
        bad = (tensor < 0) | (tensor >= self.vocab_size)
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise TokenError(
                f"token {int(tensor[row, col])} at position {col} (row {row}) is outside the "
                f"vocabulary 0..{self.vocab_size - 1} of task '{self.spec()}'; use ids below "
                f"{self.vocab_size}"
            )
        return tensor

    # ----------------------------------------------------------------- model outputs
    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """Map the model's raw output at the last position ([batch, output_size]) into the
        oracle's space: the scalar itself, or softmax probabilities (distributions and
        classes; `decision` turns class probabilities into class ids)."""
        if self.output == "scalar":
            return output[..., 0]
        return torch.softmax(output.float(), dim=-1)

    def decision(self, prediction: torch.Tensor) -> torch.Tensor:
        """The class a ``"classes"`` model decides on: the argmax of its prediction
        [batch, num_classes], ties to the smaller id."""
        if self.output != "classes":
            raise SimcheckError(f"task '{self.spec()}' has no classes: decision() needs one")
        return prediction.argmax(dim=-1)

    def valid(self, targets: torch.Tensor) -> torch.Tensor:
        """Which rows have a target: all of them, except `NO_CLASS` rows of class tasks."""
        if self.output == "classes":
            return targets >= 0
        return torch.ones(targets.shape[0], dtype=torch.bool, device=targets.device)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample loss of the raw output [batch, output_size] against the targets.

        Scalar tasks: squared error. Distribution tasks: cross-entropy minus the target's
        entropy, i.e. KL(target || model). It has the gradients of cross-entropy, and a
        perfect model scores 0 at every length, so plateaus compare across lengths. Class
        tasks: cross-entropy of the target class, 0 on `NO_CLASS` rows (see `mean_loss`).
        """
        if self.output == "scalar":
            return (output[..., 0].float() - targets.float()) ** 2
        if self.output == "classes":
            valid = self.valid(targets)
            losses = F.cross_entropy(output.float(), targets.clamp_min(0).long(), reduction="none")
            return torch.where(valid, losses, torch.zeros_like(losses))
        log_q = F.log_softmax(output.float(), dim=-1)
        p = targets.float()
        log_p = torch.where(p > 0, p.clamp_min(1e-30).log(), torch.zeros_like(p))
        return (p * (log_p - log_q)).sum(-1)

    def mean_loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss averaged over the rows that have a target (0, still differentiable, when
        none has): what training minimises."""
        valid = self.valid(targets)
        total = (self.loss(output, targets) * valid).sum()
        return total / valid.sum().clamp_min(1)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample distance between two outputs in oracle space: |a - b| for scalars,
        total variation for distributions, disagreement (0 or 1) of class ids for classes.
        This is the |f - g| of the simulation bound."""
        if self.output == "scalar":
            return (a.float() - b.float()).abs()
        if self.output == "classes":
            return (a != b).float()
        return 0.5 * (a.float() - b.float()).abs().sum(-1)

    def metric(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample error of the model against the oracle (lower is better); for classes,
        1 where the decision is wrong and NaN on `NO_CLASS` rows, which have no answer."""
        if self.output == "classes":
            wrong = self.distance(self.decision(self.prediction(output)), targets)
            return torch.where(self.valid(targets), wrong, torch.full_like(wrong, math.nan))
        return self.distance(self.prediction(output), targets)

    margin_name: str = "margin"

    def margin(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """How far each input [batch, length] is from the nearest change of the answer, in
        the task's own statistic (``margin_name``), or None when the task does not say. The
        check compares it between long inputs and inputs of length <= N to name witness
        resolution: long inputs can lie nearer a decision boundary than short ones can."""
        return None

    def short_instances(
        self, x: np.ndarray, max_length: int, generator: np.random.Generator
    ) -> list[np.ndarray]:
        """Inputs of length <= ``max_length`` built from the long input ``x`` (1-D) whose
        answer at the last position is x's, by the task's own structure (a sub-instance, or
        x pumped down): witnesses the check tries beside its generic constructions (method
        ``"task"``). None by default; the check measures every term of the chain anyway, so
        a witness that misses the answer only costs its task gap."""
        return []

    def baseline(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """Raw output of a trivial reference predictor (same space as the model's output), or
        None. Evaluation reports its loss next to the model's."""
        return None


def beta_frequencies(
    generator: np.random.Generator, alpha: float, shape: tuple[int, ...]
) -> np.ndarray:
    """Token-1 frequencies drawn from a symmetric Beta(alpha, alpha)."""
    return generator.beta(alpha, alpha, size=shape)


def bernoulli_tokens(generator: np.random.Generator, freq: np.ndarray) -> np.ndarray:
    """0/1 tokens, each 1 with the probability given elementwise by ``freq``."""
    return (generator.random(freq.shape) < freq).astype(np.int64)


def mixed_binary_tokens(
    generator: np.random.Generator, alpha: float, batch: int, length: int
) -> np.ndarray:
    """[batch, length] 0/1 tokens: each row draws its frequency of 1s from Beta(alpha,
    alpha), then its tokens independently."""
    freq = beta_frequencies(generator, alpha, (batch, 1))
    return bernoulli_tokens(generator, np.broadcast_to(freq, (batch, length)))


def token_counts(
    tokens: torch.Tensor, vocab: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """[batch, vocab] how often each token id occurs in each row of ``tokens`` [batch,
    length], an occurrence counted with its weight where ``weights`` [batch, length] is given:
    ``one_hot(tokens, vocab).sum(1)``, without its [batch, length, vocab] tensor, which a
    large vocabulary at a long length would make too large for any memory."""
    if weights is None:
        weights = torch.ones_like(tokens)
    counts = torch.zeros(tokens.shape[0], vocab, dtype=weights.dtype, device=tokens.device)
    return counts.scatter_add_(1, tokens, weights)


def check_range(task: str, name: str, value: int, low: int, high: int, meaning: str = "") -> None:
    """Refuse an integer parameter outside ``low..high``; ``meaning`` (``" (the lag)"``) says
    what the parameter is. The upper bounds keep a typo (``V=10**12``) from sampling arrays
    or building models that no memory holds."""
    if not low <= value <= high:
        raise TaskSpecError(
            f"task '{task}': {name}{meaning} must be in {low}..{high}, got {name}={value}"
        )


def check_alpha(task: str, alpha: float) -> None:
    """Refuse a concentration parameter that is not positive and finite (an infinite one
    gives NaN frequencies, and the failure would surface far away, as a diverged loss)."""
    if not 0 < alpha < math.inf:
        raise TaskSpecError(
            f"task '{task}': alpha must be a finite number > 0 (concentration), got {alpha}"
        )
