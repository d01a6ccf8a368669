"""Long texts as windows (tunesmith.models.windows): every token read, windows within the limit, a single
window is exactly what the tokenizer's own truncation gives, and a text's logits are its windows' mean."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tunesmith.models.windows import Windows, mean_by_owner, specials, split


@pytest.mark.parametrize("n,size,overlap", [(0, 8, 2), (5, 8, 2), (6, 8, 2), (7, 8, 2), (40, 8, 2), (40, 10, 0),
                                            (97, 16, 5)])
def test_windows_cover_every_token_within_the_limit_and_share_the_overlap(n, size, overlap):
    ids = list(range(100, 100 + n))
    ws = split(ids, size, overlap, 64, [1], [2])
    assert all(len(w) <= size and w[0] == 1 and w[-1] == 2 for w in ws)
    bodies = [w[1:-1] for w in ws]
    assert sorted(set(sum(bodies, []))) == ids  # every token, in some window
    for a, b in zip(bodies, bodies[1:]):
        assert a[-overlap:] == b[:overlap] if overlap else a[-1] + 1 == b[0]
    assert len(ws) == 1 or len(bodies[-1]) > overlap  # no window that only repeats the one before
    assert Windows(size, overlap, 64).covers(n + 2, 2)
    assert split(ids, size, overlap, 1, [1], [2]) == [[1, *ids[:size - 2], 2]]  # one window: truncation


def test_max_windows_stops_reading_and_covers_says_so():
    ids = list(range(50))
    assert len(split(ids, 10, 2, 3, [1], [2])) == 3
    w = Windows(10, 2, 3)
    assert w.covers(2 + 8 + 6 + 6, 2) and not w.covers(2 + 8 + 6 + 6 + 1, 2)


def test_a_text_that_fits_is_encoded_as_the_tokenizer_truncates_it(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = ["good film", "great lovely awful bad movie plot " * 5, ""]
    cut, owner = Windows(12).hf(tok, texts)
    assert list(owner) == [0, 1, 2]
    assert cut == tok(texts, truncation=True, max_length=12)["input_ids"]
    prefix, suffix = specials(lambda t, add: tok(t, add_special_tokens=add)["input_ids"])
    assert (prefix, suffix) == ([tok.cls_token_id], [tok.sep_token_id])
    cut, owner = Windows(12, 3, 8).hf(tok, texts)
    n_long = len(tok(texts[1])["input_ids"]) - 2
    assert list(owner) == [0] + [1] * len(split(list(range(n_long)), 12, 3, 8, [0], [0])) + [2]
    assert list(owner).count(1) > 1 and cut[0] == tok("good film")["input_ids"]
    assert all(len(w) <= 12 for w in cut)


def test_a_texts_logits_are_the_mean_of_its_windows_in_training_and_in_numpy():
    from tunesmith.models.windows import mean_rows

    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [0.0, 7.0]])
    owner = torch.tensor([0, 0, 0, 1])
    want = np.array([[3.0, 2.0], [0.0, 7.0]])
    assert np.allclose(mean_rows(logits, owner, 2).numpy(), want)
    assert np.allclose(mean_by_owner(logits.numpy(), owner.numpy(), 2), want)


def test_a_run_saved_before_windows_reads_its_texts_truncated(tmp_path):
    import yaml

    from tunesmith.run import load_run

    cfg = {"task": "text-classification", "model": {"name": "minilm-l6", "max_length": 64},
           "data": {"train": "rows.csv"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert load_run(tmp_path).config.model.long_text == "truncate"
    cfg["model"]["long_text"] = "windows"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert load_run(tmp_path).config.model.long_text == "windows"
