"""Specification of read_embedding: every container, the SDXL pair, images, and clear refusals."""

import logging

import pytest
import torch
from safetensors.torch import save_file

from embedding_files import a1111_dict, write_pixel_image, write_png_text_chunk
from library.embeddings import read_embedding
from library.embeddings.images import lcg_key_stream
from library.embeddings.reader import pair_first_half, pair_partner
from library.errors import UserError


def test_a1111_pt_zip_and_legacy_pickle(tmp_path, vectors):
    for name, zipped in (("zip.pt", True), ("legacy.pt", False)):
        torch.save(a1111_dict(vectors, name="inner", step=7), tmp_path / name, _use_new_zipfile_serialization=zipped)
        emb = read_embedding(tmp_path / name)
        assert (emb.layout, emb.container, emb.token, emb.step, emb.trigger) == ("a1111", "torch-pickle", "inner", 7, name[:-3])
        assert torch.equal(emb.vectors["emb_params"], vectors)


def test_cuda_saved_parameter_dict_is_mapped_to_cpu(tmp_path, vectors):
    data = {"string_to_token": {"*": torch.tensor(265)}, "string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vectors)})}
    torch.save(data, tmp_path / "embeddings.pt")
    emb = read_embedding(tmp_path / "embeddings.pt")
    assert emb.layout == "ldm" and emb.vectors["emb_params"].device.type == "cpu"


def test_safetensors_layouts_keep_dtype_and_metadata(tmp_path):
    half = torch.randn(2, 32).half()
    save_file({"emb_params": half}, tmp_path / "a.safetensors", metadata={"ti_token_string": "mytok", "ti_step": "500", "x": "y"})
    emb = read_embedding(tmp_path / "a.safetensors")
    assert (emb.layout, emb.container, emb.token, emb.step) == ("emb_params", "safetensors", "mytok", 500)
    assert emb.vectors["emb_params"].dtype == torch.float16 and emb.metadata["x"] == "y"


def test_container_is_sniffed_not_taken_from_the_extension(tmp_path, vectors):
    save_file({"<tok>": vectors}, tmp_path / "learned_embeds.bin")
    assert read_embedding(tmp_path / "learned_embeds.bin").container == "safetensors"


def test_diffusers_sdxl_pair_is_read_from_the_first_file(tmp_path):
    l, g = torch.randn(2, 32), torch.randn(2, 64)
    save_file({"<cat-toy>": l}, tmp_path / "learned_embeds.safetensors")
    save_file({"<cat-toy>": g}, tmp_path / "learned_embeds_2.safetensors")
    emb = read_embedding(tmp_path / "learned_embeds.safetensors")
    assert emb.layout == "diffusers-sdxl-pair" and emb.token == "<cat-toy>" and emb.partner.name == "learned_embeds_2.safetensors"
    assert torch.equal(emb.vectors["clip_l"], l) and torch.equal(emb.vectors["clip_g"], g)
    with pytest.raises(UserError, match="CLIP-G half of a diffusers SDXL pair; pass the first file"):
        read_embedding(tmp_path / "learned_embeds_2.safetensors")


def test_two_files_of_one_width_are_two_embeddings_not_a_pair(tmp_path):
    save_file({"<a>": torch.randn(1, 32)}, tmp_path / "style.safetensors")
    save_file({"<a>": torch.randn(1, 32)}, tmp_path / "style_2.safetensors")
    assert read_embedding(tmp_path / "style.safetensors").layout == "diffusers"
    assert read_embedding(tmp_path / "style_2.safetensors").layout == "diffusers"


def test_pair_partner_names():
    from pathlib import Path

    assert pair_partner(Path("d/learned_embeds.safetensors")).name == "learned_embeds_2.safetensors"
    assert pair_partner(Path("learned_embeds-steps-500.safetensors")).name == "learned_embeds_2-steps-500.safetensors"
    assert pair_partner(Path("mychar.safetensors")).name == "mychar_2.safetensors"
    assert pair_first_half(Path("learned_embeds_2-steps-500.safetensors")).name == "learned_embeds-steps-500.safetensors"
    assert pair_first_half(Path("mychar_2.bin")).name == "mychar.bin"
    assert pair_first_half(Path("mychar.bin")) is None


def test_a1111_png_text_chunk(tmp_path, vectors):
    emb = read_embedding(write_png_text_chunk(tmp_path / "mychar-500.png", a1111_dict(vectors, name="mychar-500", step=500)))
    assert (emb.layout, emb.container, emb.token, emb.step) == ("a1111", "png-text-chunk", "mychar-500", 500)
    assert torch.equal(emb.vectors["emb_params"], vectors)


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("WEBP", ".webp")])
def test_a1111_embedding_hidden_in_pixels(tmp_path, vectors, fmt, suffix):
    emb = read_embedding(write_pixel_image(tmp_path / f"mychar{suffix}", a1111_dict(vectors), fmt))
    assert emb.container == "image-pixels" and torch.equal(emb.vectors["emb_params"], vectors)


def test_key_stream_matches_a1111_reference_values():
    # the first values A1111's own self-test asserts (modules/textual_inversion/image_embedding.py)
    assert lcg_key_stream(12).tolist() == [253, 242, 127, 44, 157, 27, 239, 133, 38, 79, 167, 4]


def test_image_without_an_embedding_is_refused(tmp_path):
    from PIL import Image

    Image.new("RGB", (16, 16), (10, 20, 30)).save(tmp_path / "mychar.preview.png")
    with pytest.raises(UserError, match="without an embedding in it.*preview"):
        read_embedding(tmp_path / "mychar.preview.png")


def test_non_finite_values_are_warned_about(tmp_path, caplog):
    bad = torch.ones(2, 8)
    bad[0, 0], bad[1, 1] = float("nan"), float("inf")
    save_file({"emb_params": bad}, tmp_path / "bad.safetensors")
    with caplog.at_level(logging.WARNING):
        emb = read_embedding(tmp_path / "bad.safetensors")
    assert "1 NaN and 1 infinite" in emb.warnings[0] and "1 NaN" in caplog.text


def test_quiet_keeps_warnings_without_logging(tmp_path, caplog):
    save_file({"emb_params": torch.full((1, 4), float("nan"))}, tmp_path / "bad.safetensors")
    with caplog.at_level(logging.WARNING):
        emb = read_embedding(tmp_path / "bad.safetensors", quiet=True)
    assert emb.warnings and not caplog.text


def test_empty_truncated_junk_and_missing_files_are_refused(tmp_path, vectors):
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(a1111_dict(vectors), tmp_path / "whole.pt")
    save_file({"emb_params": vectors}, tmp_path / "whole.safetensors")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:300])
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "whole.safetensors").read_bytes()[:200])
    (tmp_path / "notes.txt").write_text("hello, not an embedding")
    cases = {
        "empty.pt": "is empty",
        "cut.pt": "truncated or corrupt",
        "cut.safetensors": "truncated or corrupt",
        "notes.txt": "not an embedding file",
        "missing.pt": "no such embedding file",
        ".": "is a folder",
    }
    for name, message in cases.items():
        with pytest.raises(UserError, match=message):
            read_embedding(tmp_path / name)


class _RunsCode:
    """Pickles as a call of os.makedirs: loading it with plain pickle would create the folder."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.makedirs, (str(self.marker),))


def test_a_pickle_that_needs_other_globals_is_refused_and_never_run(tmp_path, vectors):
    marker = tmp_path / "was_executed"
    torch.save({"emb_params": vectors, "extra": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match=r"refused: the file's pickle needs the Python object '(posix|os)\.makedirs'"):
        read_embedding(tmp_path / "evil.pt")
    assert not marker.exists()


def test_safetensors_whose_header_length_starts_with_a_pickle_byte_is_still_safetensors(tmp_path):
    # a header of 128 + 256k bytes begins with 0x80, the first byte of a legacy torch pickle
    from library.embeddings.reader import sniff_container

    (tmp_path / "x.safetensors").write_bytes((0x180).to_bytes(8, "little") + b'{"__metadata__":{}}')
    (tmp_path / "x.pt").write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")
    assert sniff_container(tmp_path / "x.safetensors") == "safetensors"
    assert sniff_container(tmp_path / "x.pt") == "torch-pickle"
