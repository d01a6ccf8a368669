"""Text classification with a BERT-style encoder: rows are (text, label) pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tunesmith.config import RunConfig, field_error
from tunesmith.data.load import labelled_rows, read_table
from tunesmith.data.split import check_label_sets, make_splits, sample_stratified
from tunesmith.errors import UserError
from tunesmith.memo import Memo, audit_key, key
from tunesmith.models import windows as W
from tunesmith.models.methods import apply_method, save_model
from tunesmith.models.registry import ModelRef, hub_error, resolve_model
from tunesmith.tasks import register_task
from tunesmith.tasks.base import Phase, Prepared, TaskData
from tunesmith.tasks.classification import Classifier
from tunesmith.train.precision import cpu_attention

# Config attributes that hold dropout in the encoder families transformers ships.
_DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "dropout",
                 "attention_dropout", "seq_classif_dropout")


# Full fine-tuning defaults (method_defaults): MiniLM-L6 on Banking77 (bench/RESULTS.md, issue 13).
FULL_BATCH_SIZE = 32
FULL_LR = 4e-4
FULL_LAYER_DECAY = 0.8  # with FULL_LR: bench/ablate_textcls.py, the best validation accuracy on Banking77
FULL_EPOCHS = ((1000, 5), (20000, 4), (float("inf"), 2))  # (below this many training rows, epochs)
# train.freeze_layers left unset: the bottom min(3, half) encoder layers, cached. bench/ablate_textcls.py (GPU, 5
# seeds): MiniLM-L6 with 3 frozen and cached layers validated 0.9298 vs 0.9300 on Banking77 and 0.9782 vs 0.9771 on
# BBC News, at about half the CPU time per step (bench/step_freeze_layers.py)
FULL_FREEZE_LAYERS = 3


# model.max_length auto with long texts windowed: windows of at most this many tokens. The windows read the rest
# of a text, and a token costs about the same in a 256-token window as in a 512-token one (the attention's share
# of MiniLM-L6's per-token work is about 11% at 256 and 22% at 512), with less padding per batch.
WINDOW_AUTO_CAP = 256


def default_max_length(lengths: list[int], model_limit: int, windowed: bool = False) -> int:
    """95th percentile of token lengths, rounded up to a multiple of 8, within the model's limit (and within
    WINDOW_AUTO_CAP when long texts are windowed)."""
    limit = min(model_limit, WINDOW_AUTO_CAP) if windowed else model_limit
    p95 = int(np.percentile(lengths, 95)) if lengths else limit
    return max(8, min(limit, -(-p95 // 8) * 8))


class _WindowCollate:
    """The collator for examples that may hold several windows (input_ids a list of lists): every window of the
    batch padded as one row, and `window_owner`, each window's example, for `logits` (`windows.mean_rows`). A
    batch of single-window examples is the plain collator's."""

    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if not any(_windowed(ex) for ex in items):
            return self.collate(items)
        flat, owner = [], []
        for i, ex in enumerate(items):
            fields = {k: (v if _windowed(ex) else [v]) for k, v in ex.items() if k != "labels"}
            label = {"labels": ex["labels"]} if "labels" in ex else {}
            for j in range(len(fields["input_ids"])):  # each window with its text's label (replaced below)
                flat.append({**{k: v[j] for k, v in fields.items()}, **label})
                owner.append(i)
        batch = self.collate(flat)
        if "labels" in items[0]:
            batch["labels"] = torch.tensor([ex["labels"] for ex in items])
        batch["window_owner"] = torch.tensor(owner)
        return batch


def _tokens(example: dict) -> int:
    """An example's tokens, over its windows (what the length-grouped sampler orders by)."""
    ids = example["input_ids"]
    return sum(map(len, ids)) if _windowed(example) else len(ids)


def _windowed(example: dict) -> bool:
    ids = example["input_ids"]
    return bool(ids) and isinstance(ids[0], list)


def _windows_of(examples: list[dict]) -> list[dict]:
    """Every window of the examples as an example of its own (with its example's label), in order."""
    out = []
    for ex in examples:
        if not _windowed(ex):
            out.append(ex)
            continue
        for j in range(len(ex["input_ids"])):
            out.append({**{k: v[j] for k, v in ex.items() if k != "labels"}, "labels": ex["labels"]})
    return out


def _regroup(windows: list[dict], examples: list[dict]) -> list[dict]:
    """`_windows_of`'s windows (as transformed, e.g. into cache ids) back into their examples."""
    out, at = [], 0
    for ex in examples:
        k = len(ex["input_ids"]) if _windowed(ex) else 1
        these = windows[at:at + k]
        at += k
        out.append(these[0] if not _windowed(ex) else
                   {**{f: [w[f] for w in these] for f in these[0] if f != "labels"}, "labels": ex["labels"]})
    return out



@register_task("text-classification")
class TextClassification(Classifier):
    name: str

    def method_defaults(self, cfg: RunConfig, n_train: int) -> RunConfig:
        """Full fine-tuning's defaults, for the settings the config leaves unset (bench/RESULTS.md, issue 13):
        batch 32, peak rate 4e-4 for the head with layer-wise decay 0.8 per layer below it (the ablation's
        best validation accuracy on Banking77 over 5 seeds, 0.930 vs 0.922 for one rate of 2e-4, and level
        on BBC News), and epochs from the training rows (FULL_EPOCHS)."""
        if cfg.train.method != "full":
            return cfg
        cfg = cfg.model_copy(deep=True)
        t = cfg.train
        if "batch_size" not in t.model_fields_set:
            t.batch_size = FULL_BATCH_SIZE
        t.learning_rate = t.learning_rate or FULL_LR
        if "layer_decay" not in t.model_fields_set:
            t.layer_decay = FULL_LAYER_DECAY
        t.epochs = t.epochs or next(e for rows, e in FULL_EPOCHS if n_train < rows)
        return cfg

    # -- data ------------------------------------------------------------------------------
    def load_data(self, cfg: RunConfig) -> TaskData:
        d = cfg.data
        frames: dict[str, pd.DataFrame | None] = {}
        report: dict = {}
        files = {"train": str(d.train)}
        for split in ("train", "validation", "test"):
            path = getattr(d, split)
            if path is None:
                frames[split] = None
                continue
            files[split] = str(path)
            frames[split], report[split] = labelled_rows(read_table(path), path, d.text_column,
                                                         d.label_column, d.drop_missing)
        if d.max_train_rows:
            frames["train"] = sample_stratified(frames["train"], d.max_train_rows, cfg.train.seed)
        splits = make_splits(frames["train"], frames["validation"], frames["test"], d.validation_size,
                             d.test_size, cfg.train.seed, str(d.train))
        labels = check_label_sets(splits, files)
        return TaskData(splits=splits, labels=labels, data_report={"files": report})

    def audit(self, cfg: RunConfig, data: TaskData) -> tuple[TaskData, dict]:
        """Audit the splits, apply the configured fixes; the report records both."""
        from tunesmith.data.audit import audit_splits
        from tunesmith.data.clean import apply_fixes

        report = audit_splits(data.splits, cfg.audit, seed=cfg.train.seed)
        splits, report["fixes"] = apply_fixes(dict(data.splits), report, cfg.audit, cfg.train.seed)
        labels = check_label_sets(splits, {"train": str(cfg.data.train), "validation": str(cfg.data.validation),
                                           "test": str(cfg.data.test)})
        return TaskData(splits=splits, labels=labels, data_report=data.data_report), report

    # -- model -----------------------------------------------------------------------------
    def prepare(self, cfg: RunConfig, data: TaskData, memo: Memo | None = None) -> Prepared:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

        from tunesmith.models import features as F_
        from tunesmith.models import pooling

        memo = memo or Memo(enabled=False)
        resolved = resolve_model(cfg.model.name)
        pooling.register()  # the model may be an earlier run's mean-pooled model/ folder
        kwargs = ModelRef.from_config(cfg.model, resolved.source).from_pretrained_kwargs()
        labels = data.labels
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.source, **kwargs)
            mconf = AutoConfig.from_pretrained(resolved.source, num_labels=len(labels),
                                               id2label=dict(enumerate(labels)),
                                               label2id={l: i for i, l in enumerate(labels)}, **kwargs)
        except OSError as err:
            if resolved.kind == "hub":
                raise hub_error(cfg.model.name, err) from None
            raise UserError(f"model.name = {cfg.model.name!r}: cannot load tokenizer/config from "
                            f"{resolved.source} ({str(err).splitlines()[0]})") from None
        if cfg.model.dropout is not None:
            for attr in _DROPOUT_KEYS:
                if hasattr(mconf, attr):
                    setattr(mconf, attr, cfg.model.dropout)
        attention = cpu_attention(cfg.train.precision)  # fine_tune resolved auto
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved.source, config=mconf, **kwargs, **({"attn_implementation": attention} if attention else {}))
        model = pooling.restore_pooling(model)  # an earlier run's folder saved as plain BERT, marked mean
        # contrastive tunes every body weight first (its stage is Prepared.warmup), then the head alone
        method = "full" if cfg.train.method == "contrastive" else cfg.train.method
        model = apply_method(model, method, cfg.train.lora, task_type="SEQ_CLS")
        if cfg.train.method == "full" and cfg.train.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        frozen = self._freeze_bottom(cfg, model) if cfg.train.method == "full" else 0

        model_limit = min(int(getattr(tokenizer, "model_max_length", 512) or 512),
                          int(getattr(mconf, "max_position_embeddings", 512) or 512))
        # the splits are fixed by the data, audit and seed settings: tokenize once per study
        # the contrastive stage pairs rows, one embedding each: its runs truncate (the head alone windows)
        staged = cfg.train.method == "contrastive" and cfg.train.contrastive.epochs > 0
        windowed = cfg.model.long_text == "windows" and not staged
        tokens_key = key(audit_key(cfg, self), resolved.source, cfg.model.revision, cfg.model.trust_remote_code,
                         cfg.model.max_length, windowed, cfg.model.window_overlap, cfg.model.max_windows)
        encoded, raw_lengths, windows = memo.get(
            "tokens", tokens_key, lambda: self._tokenize(tokenizer, data, cfg, windowed, model_limit))
        max_length = windows.size
        collate = _WindowCollate(DataCollatorWithPadding(tokenizer, return_tensors="pt"))
        lengths = [_tokens(e) for e in encoded["train"]]
        feature_cache, bottom = False, {"freeze_layers": frozen}
        cache = cfg.train.cache_frozen_layers
        if frozen and (cache or cache is None):  # the frozen bottom: once, not every epoch
            encoded, cached = self._cache_bottom(cfg, frozen, model, memo, tokens_key, encoded, collate)
            bottom.update(cached)
        if cfg.train.method == "linear-probe":  # the body is frozen: run it once (per window), not every epoch
            rows = {name: _windows_of(examples) for name, examples in encoded.items()}
            feats = memo.get("features", tokens_key, lambda: F_.cache_features(model, rows, collate.collate))
            if F_.attach(model, feats, rows, collate.collate):
                ids = F_.id_examples(rows, feats)
                encoded = {name: _regroup(ids[name], examples) for name, examples in encoded.items()}
                collate, feature_cache = _WindowCollate(F_.collate_ids), True
                lengths = [_tokens(e) for e in encoded["train"]]  # windows per text

        n_specials = sum(map(len, W.hf_specials(tokenizer)))
        truncated = float(np.mean([not windows.covers(n, n_specials) for n in raw_lengths]))
        longer = float(np.mean([n > max_length for n in raw_lengths]))
        warmup = self._contrastive_phase(cfg, data, encoded, collate, tokenizer, max_length) \
            if cfg.train.method == "contrastive" else None
        groups = None
        if cfg.train.method == "full" and cfg.train.layer_decay < 1.0:
            from functools import partial

            from tunesmith.models.layers import layer_decay_groups

            groups = partial(layer_decay_groups, decay=cfg.train.layer_decay, weight_decay=cfg.train.weight_decay)
        return Prepared(model=model, encoded=encoded, lengths=lengths, collate=collate, preprocessor=tokenizer,
                        loss=self.class_loss(cfg, data), warmup=warmup, param_groups=groups,
                        resolved={"model_source": resolved.source, "model_kind": resolved.kind,
                                  "max_length": max_length, "truncated_share": round(truncated, 4),
                                  "windowed_share": round(longer, 4) if windows.on else 0.0,
                                  "long_text": "windows" if windows.on else "truncate",
                                  "window_overlap": windows.overlap if windows.on else cfg.model.window_overlap,
                                  "model_limit": model_limit, "feature_cache": feature_cache, **bottom})

    @staticmethod
    def _freeze_bottom(cfg: RunConfig, model: torch.nn.Module) -> int:
        """train.freeze_layers (unset: min(FULL_FREEZE_LAYERS, half the layers) with frozen embeddings): the
        embeddings and the bottom N encoder layers, checked against the model. Returns N."""
        from tunesmith.models.layers import encoder_depth, freeze_bottom

        n_layers = cfg.train.freeze_layers
        if n_layers is None and not cfg.train.freeze_embeddings:
            return 0
        depth = encoder_depth(model)
        if n_layers is None:
            n_layers = min(FULL_FREEZE_LAYERS, depth // 2)
        if n_layers >= depth:
            raise field_error("train.freeze_layers", n_layers, f"this model has {depth} encoder layers; expected 0 "
                              f"to {max(depth - 1, 0)} (to freeze the whole encoder use train.method linear-probe)")
        if n_layers:
            freeze_bottom(model, n_layers)
        return n_layers

    @staticmethod
    def _cache_bottom(cfg: RunConfig, n: int, model: torch.nn.Module, memo: Memo, tokens_key: str, encoded: dict,
                      collate) -> tuple[dict, dict]:
        """train.cache_frozen_layers: the splits as row ids into the frozen bottom's outputs, when the cache
        fits and reproduces the model's logits (else the splits as they were); what happened, for the run."""
        import time

        from tunesmith.models import frozen_bottom as B

        precision = cfg.train.precision
        tic = time.perf_counter()
        windows = {name: _windows_of(examples) for name, examples in encoded.items()}  # one cache row per window
        plain = collate.collate
        cache = memo.get("frozen_bottom", key(tokens_key, n, precision),
                         lambda: B.cache_bottom(model, n, windows, plain, precision))
        seconds = round(time.perf_counter() - tic, 2)
        if cache is not None:
            cached = B.id_examples(windows, cache)
            if B.attach(model, cache, windows, cached, plain):
                return {name: _regroup(cached[name], examples) for name, examples in encoded.items()}, \
                    {"frozen_cache": True, "frozen_cache_seconds": seconds}
        return encoded, {"frozen_cache": False, "frozen_cache_seconds": seconds}

    def _contrastive_phase(self, cfg: RunConfig, data: TaskData, encoded: dict, collate, tokenizer,
                           max_length: int) -> Phase:
        """The contrastive stage (see tasks/contrastive.py), with each label's phrase (the zero-shot
        baseline's: eval.label_descriptions, else the name in words) as one more row for the head."""
        from tunesmith.evaluate.baselines import label_phrase
        from tunesmith.tasks.contrastive import contrastive_phase

        phrases = pd.DataFrame({"text": [label_phrase(l, cfg.eval.label_descriptions) for l in data.labels],
                                "label": data.labels})
        return contrastive_phase(cfg.train.contrastive, cfg.train.seed, cfg.train.eval_batch_size, encoded, collate,
                                 data.labels, self.metrics,
                                 self._encode(tokenizer, phrases, data.labels, W.Windows(max_length)))

    def choose_method(self, cfg: RunConfig, data: TaskData) -> dict:
        """train.method auto: the method for this much data per class (see tasks/method_choice.py)."""
        from tunesmith.tasks.method_choice import choose_method

        return choose_method(data.splits["train"]["label"].value_counts().tolist())

    def _tokenize(self, tokenizer, data: TaskData, cfg: RunConfig, windowed: bool, model_limit: int):
        """Encode every split; the max length defaults to the training texts' 95th percentile."""
        raw_lengths = [len(ids) for ids in tokenizer(data.splits["train"]["text"].tolist(), truncation=False,
                                                     verbose=False)["input_ids"]]
        max_length = cfg.model.max_length or default_max_length(raw_lengths, model_limit, windowed)
        if max_length > model_limit:
            raise field_error("model.max_length", max_length, f"this model takes at most {model_limit} tokens")
        windows = W.Windows.of(cfg.model, max_length, windowed)
        try:
            windows.check(sum(map(len, W.hf_specials(tokenizer))))
        except ValueError as err:
            raise field_error("model.window_overlap", windows.overlap, str(err)) from None
        encoded = {name: self._encode(tokenizer, df, data.labels, windows) for name, df in data.splits.items()}
        return encoded, raw_lengths, windows

    @staticmethod
    def _encode(tokenizer, df: pd.DataFrame, labels: list[str], windows: W.Windows) -> list[dict]:
        """One example per row: input_ids (and mask, type ids) of its one window, or lists of them when the
        text takes several (`_WindowCollate` batches both)."""
        index = {l: i for i, l in enumerate(labels)}
        cut, owner = windows.hf(tokenizer, df["text"].astype(str).tolist())
        per_row: list[list[list[int]]] = [[] for _ in range(len(df))]
        for ids, row in zip(cut, owner):
            per_row[row].append(ids)
        types = "token_type_ids" in tokenizer.model_input_names
        out = []
        for ws, lab in zip(per_row, df["label"]):
            ex = {"input_ids": ws, "attention_mask": [[1] * len(w) for w in ws],
                  **({"token_type_ids": [[0] * len(w) for w in ws]} if types else {})}
            out.append({**({k: v[0] for k, v in ex.items()} if len(ws) == 1 else ex), "labels": index[lab]})
        return out

    # -- objective and metrics -------------------------------------------------------------
    def logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "window_owner")}
        logits = model(**inputs).logits
        if "window_owner" in batch:  # a text's logits are the mean of its windows'
            return W.mean_rows(logits, batch["window_owner"], len(batch["labels"]))
        return logits

    def baselines(self, cfg: RunConfig, data: TaskData, prepared: Prepared) -> dict[str, np.ndarray]:
        """Test-split logits of each configured baseline (see tunesmith.evaluate.baselines)."""
        from tunesmith.evaluate import baselines as B
        from tunesmith.models.embed import embed_texts

        names, labels = cfg.eval.baselines, data.labels
        index = {l: i for i, l in enumerate(labels)}
        train, test = data.splits["train"], data.splits["test"]
        train_y = train["label"].map(index).to_numpy()
        test_texts = test["text"].astype(str).tolist()
        out: dict[str, np.ndarray] = {}
        if "majority_class" in names:
            out["majority_class"] = B.majority_class(train_y, len(test), len(labels))
        if "tfidf_logreg" in names:
            out["tfidf_logreg"] = B.tfidf_logreg(train["text"].astype(str).tolist(), train_y, test_texts, len(labels))
        if {"linear_probe", "zero_shot"} & set(names):
            # the pre-trained encoder the run started from: same source, same revision
            ref = ModelRef.from_config(cfg.model, prepared.resolved["model_source"])
            # the texts read as the run reads them: whole, in windows, or truncated
            windows = W.Windows.of(cfg.model, prepared.resolved["max_length"],
                                   prepared.resolved["long_text"] == "windows")
            test_emb = embed_texts(ref, test_texts, windows)
            if "linear_probe" in names:
                sample = sample_stratified(train, cfg.eval.probe_max_rows, cfg.train.seed)
                emb = embed_texts(ref, sample["text"].astype(str).tolist(), windows)
                out["linear_probe"] = B.linear_probe(emb, sample["label"].map(index).to_numpy(), test_emb, len(labels))
            if "zero_shot" in names:
                phrases = [B.label_phrase(l, cfg.eval.label_descriptions) for l in labels]
                out["zero_shot"] = B.zero_shot(test_emb, embed_texts(ref, phrases, windows))
        return out

    def save(self, model: torch.nn.Module, prepared: Prepared, folder: Path) -> None:
        from tunesmith.models import frozen_bottom
        from tunesmith.models.features import detached

        with detached(model) as plain, frozen_bottom.detached(plain) as real:
            save_model(real, prepared.preprocessor, folder, prepared.resolved["max_length"])
