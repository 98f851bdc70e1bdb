"""Specification of the A1111 `parameters` text: written so that other tools read it, and read back."""

from PIL import Image

from library.sampling.png_info import (
    file_short_hash,
    format_parameters,
    format_ti_hashes,
    make_pnginfo,
    parse_parameters,
    parse_ti_hashes,
    read_png_text,
)


def test_format_matches_a1111():
    text = format_parameters(
        "a photo of mychar4, (red hat:1.2)",
        "blurry",
        {"Steps": 28, "Sampler": "Euler a", "CFG scale": 7.5, "Seed": 42, "Size": "512x768", "Model": "sd15",
         "Clip skip": None, "TI hashes": format_ti_hashes({"mychar4": "0123abcd4567", "bad-hands-5": "89abcdef0123"})},
    )
    assert text == (
        "a photo of mychar4, (red hat:1.2)\n"
        "Negative prompt: blurry\n"
        'Steps: 28, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: sd15, '
        'TI hashes: "mychar4: 0123abcd4567, bad-hands-5: 89abcdef0123"'
    )


def test_parse_reads_it_back():
    text = format_parameters("a cat,\nsecond line", "ugly, (bad:1.3)", {"Steps": 20, "Sampler": "DDIM", "CFG scale": 7,
                                                                    "Seed": 1, "Model": 'odd "name", v2'})
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "a cat,\nsecond line" and parsed["negative_prompt"] == "ugly, (bad:1.3)"
    assert (parsed["Steps"], parsed["Sampler"], parsed["CFG scale"], parsed["Seed"]) == ("20", "DDIM", "7", "1")
    assert parsed["Model"] == 'odd "name", v2'


def test_parse_without_negative_prompt_or_settings():
    assert parse_parameters("just a prompt") == {"prompt": "just a prompt", "negative_prompt": ""}
    parsed = parse_parameters("p\nSteps: 2, Sampler: Euler, Seed: 3")
    assert parsed["negative_prompt"] == "" and parsed["Seed"] == "3"


def test_ti_hashes_round_trip():
    assert parse_ti_hashes("mychar4: 0123abcd4567, x: 89ab") == {"mychar4": "0123abcd4567", "x": "89ab"}
    assert format_ti_hashes({}) is None


def test_file_short_hash_is_the_first_12_hex_digits_of_sha256(tmp_path):
    path = tmp_path / "e.pt"
    path.write_bytes(b"abc")
    assert file_short_hash(path) == "ba7816bf8f01"


def test_png_text_chunks_round_trip(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=make_pnginfo("p\nSteps: 1, Sampler: DDIM, Seed: 2", {"seed": "2", "none": None}))
    text = read_png_text(path)
    assert text == {"parameters": "p\nSteps: 1, Sampler: DDIM, Seed: 2", "seed": "2"}
