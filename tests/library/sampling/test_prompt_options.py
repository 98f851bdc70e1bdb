"""Specification of prompt lines with sd-scripts' options and of prompt files (.txt, .toml, .json)."""

import logging

import pytest

from library.errors import UserError
from library.sampling.prompt_options import PromptSpec, parse_prompt_file, parse_prompt_line, parse_prompt_lines


def test_options_in_any_order_with_values_up_to_the_next_option():
    a = parse_prompt_line("a cat, (red:1.2) --n blurry, low quality --w 512 --h 768 --s 28 --d 42 --l 7.5")
    b = parse_prompt_line("a cat, (red:1.2) --l 7.5 --d 42 --s 28 --h 768 --w 512 --n blurry, low quality")
    expected = PromptSpec("a cat, (red:1.2)", "blurry, low quality", 512, 768, 28, 7.5, seeds=(42,))
    for spec in (a, b):
        assert (spec.prompt, spec.negative_prompt, spec.width, spec.height, spec.steps, spec.scale, spec.seeds) == (
            expected.prompt, expected.negative_prompt, 512, 768, 28, 7.5, (42,))
        assert spec.seed == 42


def test_seed_is_an_alias_of_d_and_names_ignore_case():
    spec = parse_prompt_line("<lesion> melanoma --seed 42 --W 640 --SS k_euler_a")
    assert (spec.prompt, spec.seeds, spec.width, spec.sampler) == ("<lesion> melanoma", (42,), 640, "k_euler_a")


def test_no_options_and_defaults():
    spec = parse_prompt_line("  just a prompt  ")
    assert spec == PromptSpec("just a prompt", source="prompt")
    assert spec.seed is None and spec.negative_prompt is None


def test_gen_img_options():
    spec = parse_prompt_line("x --d 1,2,3 --nl 3.5 --t 0.6 --ss dpmsolver++ --ow 2048 --oh 1024 --nw 512 --nh 512 --ct 8 --cl 16")
    assert spec.seeds == (1, 2, 3)
    assert (spec.negative_scale, spec.strength, spec.sampler) == (3.5, 0.6, "dpmsolver++")
    assert (spec.original_width, spec.original_height, spec.original_width_negative, spec.original_height_negative) == (2048, 1024, 512, 512)
    assert (spec.crop_top, spec.crop_left) == (8, 16)
    assert parse_prompt_line("x --nl none").negative_scale is None


def test_steps_are_clamped_like_sd_scripts():
    assert parse_prompt_line("x --s 5000").steps == 1000
    assert parse_prompt_line("x --s 0").steps == 1


def test_dashes_inside_words_are_text():
    spec = parse_prompt_line("a well--lit room, x-- y --n a--b")
    assert (spec.prompt, spec.negative_prompt) == ("a well--lit room, x-- y", "a--b")


def test_unknown_option_is_an_error_naming_line_and_option_when_strict():
    with pytest.raises(UserError, match=r"prompts\.txt line 3: unknown option --ar"):
        parse_prompt_line("a cat --ar 16:9 --w 512", 3, source="prompts.txt", strict=True)


def test_unknown_option_is_a_warning_when_lenient(caplog):
    with caplog.at_level(logging.WARNING):
        spec = parse_prompt_line("a cat --ar 16:9 --w 512", 3, source="prompts.txt")
    assert (spec.prompt, spec.width) == ("a cat", 512)
    assert "prompts.txt line 3: unknown option --ar" in caplog.text


def test_bad_values_and_unsupported_options():
    with pytest.raises(UserError, match=r"line 2: bad value 'wide' for --w"):
        parse_prompt_line("a cat --w wide", 2, strict=True)
    with pytest.raises(UserError, match=r"unknown sampler 'magic'"):
        parse_prompt_line("a cat --ss magic", 2, strict=True)
    with pytest.raises(UserError, match=r"--am \(additional-network multipliers\) is not supported"):
        parse_prompt_line("a cat --am 0.5", 1, strict=True)
    assert parse_prompt_line("a cat --w wide --h 64").height == 64  # lenient: the bad one is skipped


def test_text_file_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("# header --w 1\n\n  a cat --d 1\n   \n# a dog\nan owl --n dark", encoding="utf-8")
    specs = parse_prompt_file(path)
    assert [(s.prompt, s.seed, s.negative_prompt) for s in specs] == [("a cat", 1, None), ("an owl", None, "dark")]
    assert specs[1].source == f"{path} line 6"


def test_options_without_prompt_text_are_refused_when_strict():
    with pytest.raises(UserError, match="line 1: the line has options but no prompt text"):
        parse_prompt_lines("--w 512 --h 512", source="p.txt", strict=True)


def test_toml_file_as_sd_scripts_reads_it(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        '[prompt]\nnegative_prompt = "blurry"\nwidth = 640\nsample_steps = 20\nscale = 6.0\n\n'
        '[[prompt.subset]]\nprompt = "a cat"\nseed = 7\n\n'
        '[[prompt.subset]]\nprompt = "a dog"\nwidth = 768\nsample_sampler = "euler_a"\n',
        encoding="utf-8",
    )
    cat, dog = parse_prompt_file(path)
    assert (cat.prompt, cat.negative_prompt, cat.width, cat.steps, cat.scale, cat.seeds) == ("a cat", "blurry", 640, 20, 6.0, (7,))
    assert (dog.prompt, dog.width, dog.sampler, dog.seeds) == ("a dog", 768, "euler_a", ())


def test_json_file_as_sd_scripts_reads_it(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('[{"prompt": "a cat", "negative_prompt": "x", "height": 768, "seed": 3, "sample_steps": 12},'
                    ' "a dog --w 640"]', encoding="utf-8")
    cat, dog = parse_prompt_file(path)
    assert (cat.prompt, cat.negative_prompt, cat.height, cat.seeds, cat.steps) == ("a cat", "x", 768, (3,), 12)
    assert (dog.prompt, dog.width) == ("a dog", 640)
    path.write_text('[{"prompt": "a", "colour": "red"}]', encoding="utf-8")
    with pytest.raises(UserError, match=r"item 1: unknown key 'colour'"):
        parse_prompt_file(path, strict=True)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.txt", None, "does not exist"),
        ("latin1.txt", "café".encode("latin-1"), "is not UTF-8 text"),
        ("bad.toml", b"[prompt\n", "is not valid TOML"),
        ("flat.toml", b'prompt = "x"\n', r"\[prompt\] table with \[\[prompt.subset\]\]"),
        ("bad.json", b"[{", "is not valid JSON"),
        ("obj.json", b'{"prompt": "x"}', "expected a JSON list"),
    ],
)
def test_unreadable_prompt_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as err:
        parse_prompt_file(path)
    assert str(path) in str(err.value)


# ---- the real-world prompt files that users feed sd-scripts ---------------------------------------------------

def _specs(realworld_dir, name):
    return parse_prompt_file(realworld_dir / "sample_prompts" / name, strict=True)


def test_realworld_weighted_prompt_with_options(realworld_dir):
    (spec,) = _specs(realworld_dir, "001_kohya-lora-template_sample_prompt.txt")
    assert spec.prompt == "masterpiece, (best quality:1.2), metan, 1girl, solo, (bikini:1.1),beach"
    assert spec.negative_prompt == "(low quality:1.2), (worst quality:1.2), bad anatomy,bad composition, poor, low effort"
    assert (spec.width, spec.height, spec.scale, spec.steps, spec.seeds) == (512, 512, 7.0, 20, ())


def test_realworld_plain_prompt_without_newline(realworld_dir):
    (spec,) = _specs(realworld_dir, "002_gta-lora_plain-prompt.txt")
    assert spec.prompt == "A fierce man with dreadlocks wearing sunglasses is walking along the beach."
    assert spec.negative_prompt is None and spec.width is None


def test_realworld_all_options_seed_zero(realworld_dir):
    (spec,) = _specs(realworld_dir, "003_offlive_prompt-man-full-options.txt")
    assert spec.prompt.startswith("a photo of miadaki man,") and spec.prompt.endswith("simple background")
    assert (spec.negative_prompt, spec.width, spec.height, spec.seeds, spec.scale, spec.steps) == (
        "worst low quality", 512, 512, (0,), 7.5, 28)


def test_realworld_seed_option_on_one_line(realworld_dir):
    specs = _specs(realworld_dir, "004_snowfox_lesion-token-seed-option.txt")
    assert len(specs) == 7
    assert specs[1].prompt == "<lesion> dermoscopy image of melanoma" and specs[1].seeds == (42,)
    assert [s.seeds for i, s in enumerate(specs) if i != 1] == [()] * 6
    assert specs[-1].prompt == "<lesion> dermoscopy image of actinic keratosis"


def test_realworld_commented_lines(realworld_dir):
    (spec,) = _specs(realworld_dir, "005_train-sd-template_commented-lines-seed.txt")
    assert spec.prompt.endswith("beach, looking back") and spec.negative_prompt == "(low quality:1.2), (worst quality:1.2)"
    assert (spec.width, spec.height, spec.scale, spec.steps, spec.seeds) == (1024, 1024, 7.0, 20, (1001,))


def test_realworld_negative_last_with_commas(realworld_dir):
    specs = _specs(realworld_dir, "006_nurlan_sdxl-w-h-n-order.txt")
    assert len(specs) == 4
    assert all((s.width, s.height, s.negative_prompt) == (1024, 1024, "low quality, blurry, deformed") for s in specs)
    assert specs[0].prompt.startswith("ITSV_MilesSuit, spiderverse style") and specs[0].prompt.endswith("comic book style")


def test_realworld_cyrillic_and_blank_lines(realworld_dir):
    specs = _specs(realworld_dir, "007_hacknu_cyrillic-bracket-token-blank-lines.txt")
    assert len(specs) == 4
    assert all(s.prompt.startswith("[aldar_kose_token] ") for s in specs[:3])
    assert "«золотому яйцу»" in specs[0].prompt
    assert specs[3].prompt.startswith("negative prompt examples : wrong order")  # prose, read as a prompt
    assert all(s.negative_prompt is None and s.width is None for s in specs)


def test_realworld_double_spaces_no_newline(realworld_dir):
    (spec,) = _specs(realworld_dir, "008_lora-scripts_double-spaces-no-newline.txt")
    assert spec.prompt == "(masterpiece, best quality:1.2), 1girl, solo,"
    assert spec.negative_prompt.startswith("lowres, bad anatomy,") and spec.negative_prompt.endswith("username, blurry,")
    assert (spec.width, spec.height, spec.scale, spec.steps, spec.seeds) == (512, 768, 7.0, 24, (1337,))


def test_every_realworld_prompt_file_parses(realworld_dir):
    files = sorted((realworld_dir / "sample_prompts").iterdir())
    assert len(files) == 8
    counts = [len(parse_prompt_file(f, strict=True)) for f in files]
    assert counts == [1, 1, 1, 7, 1, 4, 4, 1]


@pytest.mark.parametrize("option", ["n", "w", "d", "ss", "l"])
def test_an_option_without_a_value_is_malformed_like_a_bad_value(option, caplog):
    with pytest.raises(UserError, match=rf"--prompt: option --{option} \(.*\) has no value"):
        parse_prompt_line(f"a mychar4 --{option}", source="--prompt", strict=True)
    with caplog.at_level(logging.WARNING):
        spec = parse_prompt_lines(f"a cat\na mychar4 --h 64 --{option}\n", source="prompts.txt")[1]
    assert (spec.prompt, spec.height, spec.negative_prompt) == ("a mychar4", 64, None)
    assert f"prompts.txt line 2: option --{option}" in caplog.text and "has no value" in caplog.text
