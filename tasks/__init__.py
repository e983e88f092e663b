"""simcheck.tasks: sequence tasks with exact oracles at any length.

`get_task("modp:p=3,k=0")` builds a registered task from a spec string; subclass `Task`
(and decorate with `register_task` to reach it from the CLI) to add your own, or
`SequenceTask` for a task with targets at many positions (copy, sort, addition, formal
languages: `seq2seq` and `languages`). The built-in
tasks import torch on first use (`simcheck._util.lazy_import`), so listing them is quick.
"""

from simcheck.errors import TokenError

from .base import (
    NO_CLASS,
    Batch,
    OutputKind,
    Task,
    bernoulli_tokens,
    beta_frequencies,
    mixed_binary_tokens,
)
from .binary import EMPTY_CLASS_TARGET, ModPTask, SimpleTask
from .classes import FirstToken, Majority, Parity, ResidueMajority
from .kgram import InContextKGram
from .languages import Dyck, Tomita
from .local import Lag
from .needle import Needle
from .registry import (
    get_task,
    register_task,
    task_class,
    task_names,
    task_parameters,
    task_record,
)
from .seq2seq import Addition, InterleavedMajority, RepeatCopy, Reverse, Sort, UniqueCopy
from .sequence import ROLES, SequenceTask, TargetRole

__all__ = [
    "EMPTY_CLASS_TARGET",
    "NO_CLASS",
    "ROLES",
    "Addition",
    "Batch",
    "Dyck",
    "FirstToken",
    "InContextKGram",
    "InterleavedMajority",
    "Lag",
    "Majority",
    "ModPTask",
    "Needle",
    "OutputKind",
    "Parity",
    "RepeatCopy",
    "ResidueMajority",
    "Reverse",
    "SequenceTask",
    "SimpleTask",
    "Sort",
    "TargetRole",
    "Task",
    "TokenError",
    "Tomita",
    "UniqueCopy",
    "bernoulli_tokens",
    "beta_frequencies",
    "get_task",
    "mixed_binary_tokens",
    "register_task",
    "task_class",
    "task_names",
    "task_parameters",
    "task_record",
]
