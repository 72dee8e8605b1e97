"""Deterministic stand-in "text encoder" for the demo model: prompt name -> [1, L, 4096].

Wan 2.1's loader fixes the text width at 4096 (UMT5-XXL).  Instead of a 5.7 B text encoder the
demo uses fixed random token embeddings:

* the prompt is lower-cased, commas removed, split on whitespace into words;
* token ``i`` (word ``w``) = ``(word_vec(w) + 0.5 * pos_vec(i)) / sqrt(1.25)`` where ``word_vec``
  and ``pos_vec`` are Gaussian 4096-vectors drawn from generators seeded by a SHA-256 of the word
  (resp. position), so they are fixed forever, independent of the vocabulary, and nearly
  orthogonal to each other (random directions in 4096-d); entries have std ~ 1;
* after the words comes an end-of-sequence token, then zero padding to ``L`` (default 16), like
  a T5 encoder's output layout.  Prompts longer than ``L - 1`` words are truncated.

The negative / unconditional embedding is the empty prompt ``""``: ``[EOS, 0, 0, ...]``; the
demo model was trained with 12% condition dropout to it, so CFG works with it.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import torch

from .clips import condition_names

TEXT_DIM = 4096
DEFAULT_LEN = 16
EMPTY = ""

VOCABULARY: tuple[str, ...] = tuple(condition_names())


def _seeded_vec(tag: str) -> torch.Tensor:
    h = hashlib.sha256(f"precisecache-demo-text|{tag}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF)
    return torch.randn(TEXT_DIM, generator=g, dtype=torch.float32)


@lru_cache(maxsize=4096)
def _word(w: str) -> torch.Tensor:
    return _seeded_vec("word:" + w)


@lru_cache(maxsize=256)
def _pos(i: int) -> torch.Tensor:
    return _seeded_vec(f"pos:{i}")


def tokenize(prompt: str) -> list[str]:
    return prompt.lower().replace(",", " ").split()


@lru_cache(maxsize=1024)
def _embed_cached(prompt: str, length: int) -> torch.Tensor:
    words = tokenize(prompt)[: length - 1]
    out = torch.zeros(1, length, TEXT_DIM, dtype=torch.float32)
    for i, w in enumerate(words):
        out[0, i] = (_word(w) + 0.5 * _pos(i)) / (1.25 ** 0.5)
    out[0, len(words)] = (_word("</s>") + 0.5 * _pos(len(words))) / (1.25 ** 0.5)
    return out


def embed(prompt: str, length: int = DEFAULT_LEN) -> torch.Tensor:
    """Embedding ``[1, length, 4096]`` (float32, a fresh copy) of any prompt string."""
    if length < 1:
        raise ValueError("length must be >= 1")
    return _embed_cached(str(prompt), int(length)).clone()


def negative(length: int = DEFAULT_LEN) -> torch.Tensor:
    """The unconditional / negative embedding (the empty prompt)."""
    return embed(EMPTY, length)


def embed_batch(prompts, length: int = DEFAULT_LEN) -> torch.Tensor:
    """``[B, length, 4096]`` for a list of prompts."""
    return torch.cat([embed(p, length) for p in prompts], dim=0)


def comfy_conditioning(prompt: str, length: int = DEFAULT_LEN) -> list:
    """ComfyUI CONDITIONING format ``[[tensor, {}]]`` (a plain list; no ComfyUI import)."""
    return [[embed(prompt, length), {}]]
