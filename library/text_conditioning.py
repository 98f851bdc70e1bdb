"""Captions to the conditioning a UNet expects, for SD 1.x/2.x and SDXL.

Long captions (`--max_token_length` 150 or 225) are tokenized to 75*k + 2 tokens and split into k chunks of
77 (BOS + 75 + EOS/pad), as sd-scripts does; each chunk is encoded on its own and the hidden states are joined
back into one sequence of 75*k + 2 positions. The pooled SDXL embedding is taken at the first end-of-text
position, never at the highest token id: new TI tokens (49408+) have higher ids than end-of-text (49407).
"""

from __future__ import annotations

import torch
from torch import nn

CHUNK = 75  # content tokens per 77-token window


def tokenize_chunks(tokenizer, captions: list[str], max_token_length: int | None = None) -> torch.Tensor:
    """Token ids shaped (batch, chunks, 77); chunks = max_token_length / 75 (1 by default)."""
    max_len = (max_token_length or CHUNK) + 2
    ids = tokenizer(captions, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt").input_ids
    if max_len == CHUNK + 2:
        return ids.unsqueeze(1)
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    chunks = []
    for start in range(1, max_len - 2, CHUNK):
        chunk = torch.cat([ids[:, :1], ids[:, start : start + CHUNK], ids[:, -1:]], dim=1)
        if pad != eos:
            # OpenCLIP pads with "!": a chunk cut mid-text must still end in EOS, and an empty chunk starts with EOS
            cut = (chunk[:, -2] != eos) & (chunk[:, -2] != pad)
            chunk[cut, -1] = eos
            empty = chunk[:, 1] == pad
            chunk[empty, 1] = eos
        chunk[:, 0] = bos
        chunks.append(chunk)
    return torch.stack(chunks, dim=1)


def join_chunks(hidden: torch.Tensor, batch: int) -> torch.Tensor:
    """(batch*chunks, 77, dim) -> (batch, 75*chunks + 2, dim): one BOS, all content, one final EOS."""
    chunks = hidden.shape[0] // batch
    hidden = hidden.reshape(batch, chunks, hidden.shape[1], hidden.shape[2])
    if chunks == 1:
        return hidden[:, 0]
    body = hidden[:, :, 1:-1].reshape(batch, chunks * (hidden.shape[2] - 2), hidden.shape[3])
    return torch.cat([hidden[:, 0, :1], body, hidden[:, -1, -1:]], dim=1)


def _unwrapped(module: nn.Module) -> nn.Module:
    # DistributedDataParallel (multi-GPU) keeps the model in .module; attributes are read from the model itself
    return getattr(module, "module", module)


def _clip_text_model(text_encoder: nn.Module) -> nn.Module:
    # CLIPTextModelWithProjection wraps a CLIPTextModel in .text_model; CLIPTextModel is the text model itself
    text_encoder = _unwrapped(text_encoder)
    return getattr(text_encoder, "text_model", text_encoder)


def _final_layer_norm(text_encoder: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    # the hidden states may come back in fp32 from a mixed-precision (accelerate-prepared) encoder whose weights
    # are bf16/fp16; CPU layer_norm refuses mixed dtypes, so match the norm's own dtype
    norm = _clip_text_model(text_encoder).final_layer_norm
    return norm(hidden.to(norm.weight.dtype))


def encode_sd(text_encoder: nn.Module, chunk_ids: torch.Tensor, clip_skip: int | None = None) -> torch.Tensor:
    """SD 1.x/2.x conditioning: last hidden state, or with clip_skip N the N-th from last through the final norm."""
    batch = chunk_ids.shape[0]
    flat = chunk_ids.reshape(-1, chunk_ids.shape[-1]).to(_unwrapped(text_encoder).device)
    if clip_skip is None or clip_skip <= 1:
        hidden = text_encoder(flat).last_hidden_state
    else:
        out = text_encoder(flat, output_hidden_states=True)
        hidden = _final_layer_norm(text_encoder, out.hidden_states[-clip_skip])
    return join_chunks(hidden, batch)


def first_eos_positions(ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Index of the first end-of-text token in each row (the tokenizer guarantees one)."""
    return (ids == eos_token_id).int().argmax(dim=-1)


def encode_sdxl(
    text_encoders: list[nn.Module], chunk_ids: list[torch.Tensor], eos_token_id: int = 49407
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL conditioning: penultimate states of both encoders concatenated, and encoder 2's pooled projection.

    The pooled embedding comes from the first chunk's EOS position (as sd-scripts does for long captions).
    """
    te1, te2 = text_encoders
    ids1, ids2 = chunk_ids
    batch = ids1.shape[0]
    flat1 = ids1.reshape(-1, ids1.shape[-1]).to(_unwrapped(te1).device)
    flat2 = ids2.reshape(-1, ids2.shape[-1]).to(_unwrapped(te2).device)
    hidden1 = te1(flat1, output_hidden_states=True).hidden_states[-2]
    out2 = te2(flat2, output_hidden_states=True)
    hidden2 = out2.hidden_states[-2]
    final = _final_layer_norm(te2, out2.hidden_states[-1])
    rows = torch.arange(final.shape[0], device=final.device)
    pooled = _unwrapped(te2).text_projection(final[rows, first_eos_positions(flat2, eos_token_id)])
    pooled = pooled.reshape(batch, -1, pooled.shape[-1])[:, 0]
    hidden = torch.cat([join_chunks(hidden1, batch), join_chunks(hidden2, batch).to(hidden1.dtype)], dim=-1)
    return hidden, pooled


def sdxl_time_ids(original_sizes_hw: torch.Tensor, crop_top_lefts: torch.Tensor, target_sizes_hw: torch.Tensor) -> torch.Tensor:
    """SDXL's micro-conditioning: (original h, w, crop top, left, target h, w) per sample."""
    return torch.cat([original_sizes_hw, crop_top_lefts, target_sizes_hw], dim=1).float()
