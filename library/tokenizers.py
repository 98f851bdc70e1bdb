"""The CLIP tokenizers shipped inside the package, so no model load needs the network."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPTokenizer

TOKENIZER_DIR = Path(__file__).parent / "resources" / "tokenizers"
MAX_LENGTH = 77  # 75 content tokens + BOS + EOS


def load_bundled_tokenizer(style: str) -> CLIPTokenizer:
    """`style` is "sd1" (CLIP-L, pads with <|endoftext|>) or "sd2" (OpenCLIP, pads with "!")."""
    if style not in ("sd1", "sd2"):
        raise ValueError(f"unknown tokenizer style {style!r}; expected 'sd1' or 'sd2'")
    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR / style))
