"""Shared fixtures: a tiny BERT built in the test (no download) and small labelled tables."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

POSITIVE = ["good", "great", "excellent", "happy", "love", "fine", "nice", "superb"]
NEGATIVE = ["bad", "awful", "poor", "sad", "hate", "broken", "terrible", "worst"]
NEUTRAL = ["the", "a", "movie", "food", "service", "it", "was", "is", "and", "this", "day", "staff"]


def make_rows(n: int, seed: int = 0, classes: int = 2) -> pd.DataFrame:
    """Short texts whose label is given by the sentiment words they contain (learnable by a tiny model)."""
    rng = random.Random(seed)
    words = [POSITIVE, NEGATIVE, ["ok", "average", "meh", "plain"]][:classes]
    names = ["pos", "neg", "mid"][:classes]
    rows = []
    for i in range(n):
        k = i % classes
        filler = rng.sample(NEUTRAL, rng.randint(1, 6))
        cue = rng.sample(words[k], rng.randint(1, 2))
        toks = filler + cue
        rng.shuffle(toks)
        rows.append({"text": " ".join(toks), "label": names[k]})
    return pd.DataFrame(rows)


def build_tiny_bert(folder: Path, num_labels: int = 2) -> Path:
    """2 layers, width 32, a vocabulary of a few hundred word pieces; saved like a hub model."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(POSITIVE + NEGATIVE + NEUTRAL)) + \
        ["ok", "average", "meh", "plain"] + letters + ["##" + c for c in letters]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(vocab))}, do_lower_case=True,
                        model_max_length=64)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    import torch

    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    path = tmp_path / "reviews.csv"
    make_rows(160, seed=1).to_csv(path, index=False)
    return path


def tiny_config(model: Path, train: Path, out: Path, **train_overrides) -> dict:
    """A config mapping for the tiny model: fast, deterministic, CPU."""
    return {
        "task": "text-classification",
        "model": {"name": str(model), "max_length": 32},
        "data": {"train": str(train), "text_column": "text", "label_column": "label"},
        # method full unless a test asks: auto would pick contrastive for the smaller test sets
        "train": {"method": "full", "epochs": 4, "batch_size": 8, "learning_rate": 3e-3, "seed": 7,
                  "logging_steps": 2, "warmup_ratio": 0.0,
                  # the default freezes word embeddings, right for pre-trained encoders; a random tiny model
                  # has nothing to keep in them and barely learns with them frozen
                  "freeze_embeddings": False,
                  # likewise the default layer-wise rate decay (0.8 per layer) is for pre-trained lower layers
                  "layer_decay": 1.0, **train_overrides},
        "output_dir": str(out),
        "run_name": "run",
    }


@pytest.fixture
def needs_shared():
    if not SHARED.is_dir():
        pytest.skip(f"../shared (public benchmark data) is absent at {SHARED}")
    return SHARED

QA = [("What colour is the sky?", "The sky is blue."), ("What colour is grass?", "Grass is green."),
      ("What do cows drink?", "Cows drink water."), ("Where is Paris?", "Paris is in France."),
      ("How many legs has a cat?", "A cat has four legs."), ("What is two plus two?", "Two plus two is four.")]


def make_chats(n: int, seed: int = 0) -> list[dict]:
    """Chat rows ({"messages": [...]}) a tiny causal LM can learn: a fixed answer per question."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q, a = QA[i % len(QA)]
        rows.append({"messages": [{"role": "user", "content": f"{q} ({i})"},
                                  {"role": "assistant", "content": a + " " + rng.choice(["Sure.", "Yes.", "Ok."])}]})
    return rows


def build_tiny_lm(folder: Path, chat_template: bool = True) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained here, ChatML special tokens and template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tunesmith.models.chat import TEMPLATES

    folder.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"{q} {a} user assistant system Sure. Yes. Ok." for q, a in QA] * 20
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  bos_token="<|im_start|>", unk_token="<|endoftext|>", model_max_length=256)
    if chat_template:
        tok.chat_template = TEMPLATES["chatml"]
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                               bos_token_id=tok.bos_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))
