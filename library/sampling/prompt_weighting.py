"""Prompt text -> the conditioning a diffusers pipeline takes (`prompt_embeds`, and pooled embeds for SDXL).

Two things beyond a plain tokenizer call, as sd-scripts' sampling and AUTOMATIC1111 do them:
- Long prompts: past 75 tokens the prompt is split into 75-token chunks, each encoded as its own 77-token window
  (BOS + 75 + EOS/pad) and the windows' hidden states concatenated; up to `max_embeddings_multiples` chunks.
  Prompt and negative prompt (and every prompt of a batch) are padded to the same number of chunks.
- Weighting: `(word:1.2)`, `(word)` = x1.1, `[word]` = /1.1, `\\(` a literal bracket. Each token's hidden state is
  multiplied by its weight, then the whole sequence is rescaled so that its mean is what it was unweighted.
Embedding trigger words are ordinary (added) tokens here, so they can be weighted like any word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

CHUNK = 75  # content tokens per 77-token window
ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

_ATTENTION_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]        # escaped bracket or backslash: literal
  | \\                  # a lone backslash: literal
  | \(                  # open emphasis
  | \[                  # open de-emphasis
  | :\s*([+-]?[.\d]+)\s*\)   # explicit weight closing a round bracket: (text:1.2)
  | \)                  # close emphasis
  | \]                  # close de-emphasis
  | [^\\()\[\]:]+       # plain text
  | :                   # a colon that is not a weight
    """,
    re.VERBOSE,
)


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split A1111-weighted text into (text, weight) runs: `a (b:1.5) [c]` -> a 1.0, b 1.5, c 1/1.1.

    Unbalanced brackets are closed at the end of the text, as A1111 does; adjacent runs of equal weight merge.
    """
    runs: list[list] = []
    open_round: list[int] = []
    open_square: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            runs.append([token[1:] if len(token) > 1 else token, 1.0])
        elif token == "(":
            open_round.append(len(runs))
        elif token == "[":
            open_square.append(len(runs))
        elif weight is not None and open_round:
            multiply(open_round.pop(), float(weight))
        elif token == ")" and open_round:
            multiply(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            multiply(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            runs.append([token, 1.0])
    for start in open_round:
        multiply(start, ROUND_MULTIPLIER)
    for start in open_square:
        multiply(start, SQUARE_MULTIPLIER)

    merged: list[tuple[str, float]] = []
    for run_text, run_weight in runs:
        if merged and merged[-1][1] == run_weight:
            merged[-1] = (merged[-1][0] + run_text, run_weight)
        else:
            merged.append((run_text, run_weight))
    return merged or [("", 1.0)]


def tokenize_weighted(tokenizer, text: str, max_tokens: int) -> tuple[list[int], list[float], bool]:
    """Content token ids (no BOS/EOS) with one weight each, cut to `max_tokens`; the flag says it was cut."""
    ids: list[int] = []
    weights: list[float] = []
    for run_text, weight in parse_prompt_attention(text):
        if not run_text:
            continue
        # verbose=False: long prompts are expected here, no "sequence longer than 77" warning
        run_ids = tokenizer(run_text, add_special_tokens=False, verbose=False).input_ids
        ids += run_ids
        weights += [weight] * len(run_ids)
    truncated = len(ids) > max_tokens
    return ids[:max_tokens], weights[:max_tokens], truncated


def chunk_count(num_tokens: int) -> int:
    return max(1, -(-num_tokens // CHUNK))


def build_windows(tokenizer, ids: list[int], weights: list[float], num_chunks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(num_chunks, 77) token windows and their weights: BOS + 75 content + EOS, padded as the tokenizer pads.

    A window of fewer than 75 tokens ends `... EOS PAD PAD`, exactly what the tokenizer's own max_length padding
    gives, so a short unweighted prompt encodes the same as diffusers' plain `encode_prompt`.
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    window_ids, window_weights = [], []
    for c in range(num_chunks):
        part = ids[c * CHUNK : (c + 1) * CHUNK]
        part_w = weights[c * CHUNK : (c + 1) * CHUNK]
        fill = CHUNK - len(part)
        window_ids.append([bos] + part + [eos] + [pad] * fill)
        window_weights.append([1.0] + part_w + [1.0] + [1.0] * fill)
    return torch.tensor(window_ids, dtype=torch.long), torch.tensor(window_weights, dtype=torch.float32)


EMB_NORMALIZE_MODES = ("original", "abs", "none")


def apply_weights(hidden: torch.Tensor, weights: torch.Tensor, normalize: str = "original") -> torch.Tensor:
    """Multiply each position by its weight, then restore each sample's mean (sd-scripts' lpw normalisation).

    `normalize` is sd-scripts' --emb_normalize_mode: "original" restores the mean, "abs" the mean of absolute
    values (negative weights cannot flip the scale), "none" leaves the weighted states as they are.
    """
    if bool((weights == 1.0).all()):
        return hidden  # nothing weighted: leave the states bit-identical
    original = hidden.float()
    weighted = original * weights.to(hidden.device).unsqueeze(-1)
    if normalize == "none":
        return weighted.to(hidden.dtype)
    measure = (lambda x: x.abs()) if normalize == "abs" else (lambda x: x)
    previous_mean = measure(original).mean(dim=(-2, -1), keepdim=True)
    current_mean = measure(weighted).mean(dim=(-2, -1), keepdim=True)
    return (weighted * (previous_mean / current_mean)).to(hidden.dtype)


def _text_model(text_encoder: nn.Module) -> nn.Module:
    # CLIPTextModel(WithProjection) keeps the transformer (with final_layer_norm) in .text_model
    return getattr(text_encoder, "text_model", text_encoder)


@dataclass
class PromptEmbeds:
    """What a diffusers SD/SDXL pipeline takes as `prompt_embeds=` etc.; pooled ones are None for SD 1.x/2.x."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def as_pipeline_kwargs(self) -> dict:
        kwargs = {"prompt_embeds": self.prompt_embeds, "negative_prompt_embeds": self.negative_prompt_embeds}
        if self.pooled_prompt_embeds is not None:
            kwargs["pooled_prompt_embeds"] = self.pooled_prompt_embeds
            kwargs["negative_pooled_prompt_embeds"] = self.negative_pooled_prompt_embeds
        return kwargs


class PromptEncoder:
    """Encodes weighted, possibly long prompts with a model's tokenizer(s) and text encoder(s).

    `family` is "sd1", "sd2" or "sdxl". `clip_skip`: SD 1.x/2.x use the last layer by default (1) and layer
    -N through the final layer norm for N > 1; SDXL uses layer -2 (the penultimate, no final norm) by default
    and -N when given. `rewrite` maps prompt text before parsing, e.g. an embedding trigger to its N tokens.
    """

    def __init__(
        self,
        family: str,
        tokenizers: list,
        text_encoders: list[nn.Module],
        *,
        clip_skip: int | None = None,
        max_embeddings_multiples: int = 3,
        rewrite: Callable[[str], str] | None = None,
        emb_normalize_mode: str = "original",
    ):
        if family not in ("sd1", "sd2", "sdxl"):
            raise ValueError(f"unknown model family {family!r}")
        expected = 2 if family == "sdxl" else 1
        if len(tokenizers) < expected or len(text_encoders) < expected:
            raise ValueError(f"{family} needs {expected} tokenizer(s) and text encoder(s)")
        self.family = family
        self.tokenizers = list(tokenizers[:expected])
        self.text_encoders = list(text_encoders[:expected])
        self.clip_skip = clip_skip
        self.max_chunks = max(1, int(max_embeddings_multiples))
        self.rewrite = rewrite
        self.emb_normalize_mode = emb_normalize_mode
        self.truncated: list[str] = []  # prompts cut at max_embeddings_multiples * 75 tokens (for a warning)

    # -- tokens ---------------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str], tokenizer) -> list[tuple[list[int], list[float]]]:
        out = []
        for text in texts:
            if self.rewrite is not None:
                text = self.rewrite(text)
            ids, weights, cut = tokenize_weighted(tokenizer, text, self.max_chunks * CHUNK)
            if cut and text not in self.truncated:
                self.truncated.append(text)
            out.append((ids, weights))
        return out

    # -- hidden states --------------------------------------------------------------------------------------
    def _hidden(self, encoder_index: int, window_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(windows, 77, dim) states of the family's layer, and the final (normed) states for pooling."""
        encoder = self.text_encoders[encoder_index]
        device = next(encoder.parameters()).device
        out = encoder(window_ids.to(device), output_hidden_states=True, return_dict=True)
        if self.family == "sdxl":
            layer = out.hidden_states[-(self.clip_skip or 2)]
        elif self.clip_skip is None or self.clip_skip <= 1:
            layer = out.last_hidden_state
        else:
            layer = _text_model(encoder).final_layer_norm(out.hidden_states[-self.clip_skip])
        return layer, out.last_hidden_state

    def _encode_one_encoder(self, encoder_index: int, texts: list[str], num_chunks: int | None):
        tokenizer = self.tokenizers[encoder_index]
        tokenized = self.tokenize(texts, tokenizer)
        windows = [build_windows(tokenizer, ids, w, num_chunks) for ids, w in tokenized]
        window_ids = torch.cat([ids for ids, _ in windows])  # (B*chunks, 77)
        window_weights = torch.stack([w.reshape(-1) for _, w in windows])  # (B, chunks*77)
        layer, final = self._hidden(encoder_index, window_ids)
        batch = len(texts)
        hidden = layer.reshape(batch, num_chunks * layer.shape[1], layer.shape[2])
        hidden = apply_weights(hidden, window_weights, self.emb_normalize_mode)
        pooled = None
        if self.family == "sdxl" and encoder_index == 1:
            pooled = self._pooled(self.text_encoders[1], window_ids, final, tokenizer.eos_token_id, batch, num_chunks)
        return hidden, pooled

    @staticmethod
    def _pooled(encoder: nn.Module, window_ids, final, eos_id: int, batch: int, num_chunks: int) -> torch.Tensor:
        # The pooled text embedding sits at the first EOS of the first window. Found by comparing with the EOS
        # id, never by argmax over ids: embedding tokens (49408+) have higher ids than EOS (49407).
        first = torch.arange(batch) * num_chunks
        ids = window_ids[first].to(final.device)
        eos_pos = (ids == eos_id).int().argmax(dim=-1)
        states = final[first.to(final.device), eos_pos]
        projection = getattr(encoder, "text_projection", None)
        return projection(states) if projection is not None else states

    def num_chunks_for(self, texts: list[str]) -> int:
        """Chunks needed by the longest of `texts` (at most max_embeddings_multiples)."""
        lengths = [len(ids) for tok in self.tokenizers for ids, _ in self.tokenize(texts, tok)]
        return min(self.max_chunks, max(chunk_count(n) for n in lengths))

    def encode_texts(self, texts: list[str], num_chunks: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, chunks*77, dim) conditioning and (B, pooled dim) pooled embeds (SDXL) for `texts`."""
        if num_chunks is None:
            num_chunks = self.num_chunks_for(texts)
        if self.family != "sdxl":
            hidden, _ = self._encode_one_encoder(0, texts, num_chunks)
            return hidden, None
        hidden1, _ = self._encode_one_encoder(0, texts, num_chunks)
        hidden2, pooled = self._encode_one_encoder(1, texts, num_chunks)
        return torch.cat([hidden1, hidden2.to(hidden1.device, hidden1.dtype)], dim=-1), pooled

    @torch.no_grad()
    def encode(self, prompts: list[str], negative_prompts: list[str], dtype: torch.dtype | None = None,
               num_chunks: int | None = None) -> PromptEmbeds:
        """Embeddings for a batch; prompts and negative prompts padded to one common number of chunks."""
        if len(prompts) != len(negative_prompts):
            raise ValueError("one negative prompt per prompt is needed")
        if num_chunks is None:
            num_chunks = self.num_chunks_for(list(prompts) + list(negative_prompts))
        cond, pooled = self.encode_texts(list(prompts), num_chunks)
        uncond, negative_pooled = self.encode_texts(list(negative_prompts), num_chunks)

        def cast(t):
            return t if t is None or dtype is None else t.to(dtype)

        return PromptEmbeds(cast(cond), cast(uncond), cast(pooled), cast(negative_pooled))
