"""Models whose weights the tests set by hand."""

from __future__ import annotations

import math

import torch

import simcheck
from simcheck.model.build import SimcheckTransformer

TOKEN, CLASS, OUTPUT = 0, 1, 2
"""The residual coordinates of `hand_set_model`: the token, the residue-0 mark, the output."""


def blank_modp_head(pos: str = "periodic", **overrides) -> SimcheckTransformer:
    """A ModPTask(p=3) model of one attention head and nothing else (d_model 4, no MLP, no
    normalisation) with every parameter zero, ready for weights set by hand."""
    model = simcheck.build_model(
        simcheck.get_task("modp:p=3"),
        pos=pos,
        n_layers=1,
        n_heads=1,
        d_model=4,
        d_mlp=0,
        normalization="none",
        **overrides,
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    return model


def hand_set_model(
    margin: float = 8.0,
    pos: str = "periodic",
    n_ctx: int = 512,
    value: int = TOKEN,
) -> SimcheckTransformer:
    """The hand-set model (module docstring) with logit gap ``margin``; its head copies the
    residual coordinate ``value`` (TOKEN: the task's answer; CLASS: the attention mass on
    residue 0) into OUTPUT. With ``pos="learned"`` every row of the n_ctx-row table marks
    its residue."""
    model = blank_modp_head(pos, **({"n_ctx": n_ctx} if pos == "learned" else {}))
    attn = model.blocks[0].attn
    with torch.no_grad():
        model.W_E[1, TOKEN] = 1.0
        rows = torch.arange(model.W_pos.shape[0])
        model.W_pos[:, CLASS] = (rows % 3 == 0).float()
        attn.W_K[0, CLASS, 0] = 1.0
        attn.b_Q[0, 0] = margin * math.sqrt(attn.cfg.d_head)  # scores are q.k / sqrt(d_head)
        attn.W_V[0, value, 0] = 1.0
        attn.W_O[0, 0, OUTPUT] = 1.0
        model.W_U[OUTPUT, 0] = 1.0
    return model


def jumping_model(train_len: int = 32, jump: float = 5.0) -> SimcheckTransformer:
    """The hand-set model with learned positions whose rows >= ``train_len`` add ``jump`` to
    the output: exact on short inputs, off by ``jump`` on long ones."""
    model = hand_set_model(pos="learned", n_ctx=512)
    with torch.no_grad():
        model.W_pos[train_len:, OUTPUT] = jump
    return model


def sink_majority_model(vocab: int = 2, gamma: float = 0.5, scale: float = 4.0):
    """Majority(V) by one attention head over a BOS sink, built by hand (NoPE, one layer,
    attention only, no normalisation; BOS = token V, put in front by the adapter).

    The head gives the BOS key a logit ``gamma`` above every task token's, whose values are
    one-hot token indicators (BOS's is 0); the unembedding reads them, so the output is the
    attention-weighted token histogram and its argmax the majority. In p-bit attention a task
    key weighs n^-gamma against the sink and rounds to 0 once n > 2^(p/gamma): beyond that
    length the output is 0 and the decision falls to class 0. Returns the model and its
    `ModelAdapter`."""
    d_model = 2 + 2 * vocab  # [BOS, constant, one-hot token, read-out]
    task = simcheck.get_task(f"majority:V={vocab}")
    model = simcheck.build_model(
        task,
        pos="none",
        n_layers=1,
        n_heads=1,
        d_model=d_model,
        d_mlp=0,
        normalization="none",
        d_vocab=vocab + 1,
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        embed = model.embed.W_E
        embed[vocab, 0] = 1.0
        for token in range(vocab):
            embed[token, 1] = 1.0
            embed[token, 2 + token] = 1.0
        attn = model.blocks[0].attn
        root = float(model.cfg.d_head) ** 0.5
        attn.W_Q[0, 1, 0] = gamma * root  # every task token queries with gamma
        attn.W_K[0, 0, 0] = 1.0  # only BOS answers
        for token in range(vocab):
            attn.W_V[0, 2 + token, 1 + token] = 1.0
            attn.W_O[0, 1 + token, 2 + vocab + token] = 1.0
            model.unembed.W_U[2 + vocab + token, token] = scale
    return model, simcheck.ModelAdapter(prefix=(vocab,))
