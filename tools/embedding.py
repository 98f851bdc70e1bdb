#!/usr/bin/env python
"""Inspect and convert Textual Inversion embedding files of any layout (A1111, sd-scripts, diffusers, SDXL, ...).

  python tools/embedding.py inspect badhandv4.pt EasyNegative.safetensors [--model MODEL]
  python tools/embedding.py convert badhandv4.pt --to safetensors [--name TOKEN] [--out PATH] [--force]

The trigger word of a file is its file name without extension; converting keeps it unless --out renames it.
See docs/embeddings.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from library.cli import run_main  # noqa: E402
from library.errors import UserError  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    from library.embeddings.convert import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="describe embedding files: layout, trigger word, shapes, fit, norms, metadata")
    inspect.add_argument("files", nargs="+", help="embedding files (.pt, .bin, .safetensors, A1111 .png/.webp)")
    inspect.add_argument("--model", help="a diffusers model folder or .safetensors checkpoint to compare the vectors' norms with its vocabulary")

    convert = commands.add_parser("convert", help="write an embedding in another layout")
    convert.add_argument("file", help="the embedding to convert (for a diffusers SDXL pair: the first file)")
    convert.add_argument(
        "--to",
        required=True,
        choices=TARGETS,
        help="a1111-pt: A1111 .pt; safetensors: emb_params or clip_l+clip_g; diffusers: {token: vectors} "
        "(SDXL: the X + X_2 pair); sdxl-pair: the diffusers SDXL pair; a1111-png: a PNG carrying the embedding in "
        "AUTOMATIC1111's sd-ti-embedding chunk",
    )
    convert.add_argument("--name", help="the token name stored inside the file (default: the source's, else its file name)")
    convert.add_argument("--out", help="output file (default: beside the source, same name, the format's extension)")
    convert.add_argument("--force", action="store_true", help="overwrite existing output files")
    return parser


def inspect_files(files: list[str], model: str | None) -> None:
    from library.embeddings.reader import read_embedding
    from library.embeddings.report import describe
    from library.embeddings.vocab import token_embedding_tables

    tables = token_embedding_tables(model) if model else None
    failed = 0
    for i, file in enumerate(files):
        if i:
            print()
        try:
            emb = read_embedding(file, quiet=True)
        except UserError as err:
            failed += 1
            print(f"error: {err}")
            continue
        print("\n".join(describe(emb, tables)))
    if failed:
        raise UserError(f"{failed} of {len(files)} file(s) could not be read (see above)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "inspect":
        inspect_files(args.files, args.model)
        return
    from library.embeddings.convert import convert_embedding

    for path in convert_embedding(args.file, args.to, out=args.out, name=args.name, force=args.force):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run_main(main))
