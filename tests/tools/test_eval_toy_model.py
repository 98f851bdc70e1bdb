"""tools/eval_toy_model.py on the shipped toy model: one JSON object with every score it documents."""

import json

import torch

from library.toyworld.world import BACKGROUNDS
from tests.helpers.tools import load_tool


def test_a_tiny_evaluation_prints_every_score(capsys):
    load_tool("eval_toy_model").main(["--n", "2", "--steps", "2", "--threads", str(torch.get_num_threads())])
    result = json.loads(capsys.readouterr().out)
    assert set(result["seen_prompts"]) == {"color", "shape", "both", "background"}
    assert set(result["also_held_out"]) == {"blue cross"}  # the shipped model's second unseen pair
    for pair_scores in (result["held_out"], *result["also_held_out"].values()):
        for name in ("held_out_words", "init_word_baseline"):
            scores = pair_scores[name]
            assert len(scores["by_prompt"]) == len(BACKGROUNDS) and 0 <= scores["held_out_rate"] <= 1
    assert "classifier_on_renders" not in result  # only with --classifier
