"""Instruction / chat fine-tuning (SFT) of a causal language model.

Rows become conversations (lists of {role, content}; tunesmith.data.chat); the tokenizer's chat
template renders them; the loss covers assistant tokens only (by default); optional packing keeps
conversations from attending to each other. The run proves the stop token before training, and
afterwards compares the tuned model with the base model on held-out conversations
(tunesmith.evaluate.generation): response loss with a paired bootstrap, and generated answers
(exact match, token F1, ROUGE-L) side by side in report.html.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from tunesmith.config import RunConfig, field_error
from tunesmith.data.chat import conversations, mask_conversations, split_off
from tunesmith.data.load import ROW, read_table
from tunesmith.errors import UserError
from tunesmith.io import atomic_write_json
from tunesmith.memo import Memo, audit_key, key
from tunesmith.models import chat
from tunesmith.models.methods import apply_method, save_model
from tunesmith.models.registry import ModelRef, hub_error, resolve_model
from tunesmith.tasks import register_task
from tunesmith.tasks.base import Prepared, TaskData


@register_task("sft")
class SupervisedFineTuning:
    name: str

    def configure(self, cfg: RunConfig) -> RunConfig:
        """A language model is scored by its validation loss on the responses (the default, and the only
        choice), and trains all or LoRA weights (a linear probe has no head to train)."""
        cfg = cfg.model_copy(deep=True)
        if "metric_for_best" not in cfg.train.model_fields_set:
            cfg.train.metric_for_best = "loss"
        if "metric" not in cfg.tune.model_fields_set:
            cfg.tune.metric = "loss"
        for field, value in (("train.metric_for_best", cfg.train.metric_for_best), ("tune.metric", cfg.tune.metric)):
            if value != "loss":
                raise field_error(field, value, "task sft is scored by validation loss; use loss")
        if cfg.train.method == "auto":  # auto chooses by data size for text classification only
            cfg.train.method = "full"
        if cfg.train.method in ("linear-probe", "contrastive"):
            raise field_error("train.method", cfg.train.method, "does not apply to task sft; use lora or full")
        return cfg

    # -- data ------------------------------------------------------------------------------
    def data_settings(self, cfg: RunConfig) -> dict:
        """Layout, columns and system prompt shape the conversations; the rest applies after loading."""
        return cfg.sft.model_dump(mode="json", exclude={"chat_template", "train_on_prompt", "packing", "overlong",
                                                        "eval_generations", "max_new_tokens"})

    def load_data(self, cfg: RunConfig) -> TaskData:
        d = cfg.data
        frames = {}
        report = {}
        for split in ("train", "validation", "test"):
            path = getattr(d, split)
            if path is None:
                continue
            frames[split] = conversations(read_table(path), Path(path), cfg.sft)
            report[split] = {"file": str(path), "conversations": len(frames[split])}
        if d.max_train_rows and len(frames["train"]) > d.max_train_rows:
            frames["train"] = frames["train"].sample(d.max_train_rows,
                                                     random_state=cfg.train.seed).reset_index(drop=True)
        if "test" not in frames:
            frames["train"], frames["test"] = split_off(frames["train"], d.test_size, cfg.train.seed, "test",
                                                        str(d.train))
        if "validation" not in frames:
            frames["train"], frames["validation"] = split_off(frames["train"], d.validation_size / (1 - d.test_size),
                                                              cfg.train.seed + 1, "validation", str(d.train))
        splits = {k: frames[k] for k in ("train", "validation", "test")}
        return TaskData(splits=splits, labels=[], data_report={"files": report})

    def audit(self, cfg: RunConfig, data: TaskData) -> tuple[TaskData, dict]:
        """Shared text checks on the rendered conversations (duplicates, near-duplicates, leakage,
        personal data, encoding) plus SFT checks: empty turns and a missing assistant turn (blocking:
        nothing to learn). Lengths against the context are added once the tokenizer is known."""
        from tunesmith.data.audit import (BLOCKING, check_encoding, check_exact, check_near_conversations, check_pii,
                                          finding)
        from tunesmith.data.clean import drop_rows, apply_fixes

        frames = data.splits
        findings = check_exact(frames) + check_near_conversations(frames, cfg.audit.near_duplicate_threshold)
        findings = [f for f in findings if f["check"] != "conflicting_duplicates"]
        findings += [check_pii(frames), check_encoding(frames)]
        empty, no_answer = [], []
        for split, df in frames.items():
            for msgs, row in zip(df["messages"], df[ROW]):
                if not msgs or any(not m["content"].strip() for m in msgs):
                    empty.append({"split": split, "row": int(row)})
                if not any(m["role"] == "assistant" and m["content"].strip() for m in msgs):
                    no_answer.append({"split": split, "row": int(row)})
        findings += [
            finding("empty_turns", BLOCKING, empty, f"{len(empty)} conversations have an empty turn"
                     if empty else "no empty turns"),
            finding("missing_assistant_turn", BLOCKING, no_answer, f"{len(no_answer)} conversations have no "
                     "assistant answer to learn" if no_answer else "every conversation has an assistant answer"),
        ]
        report = {"rows": {s: int(len(df)) for s, df in frames.items()},
                  "blocking": [f["check"] for f in findings if f["severity"] == BLOCKING],
                  "findings": findings, "seconds": {}, "fixes": []}
        fixable = {"empty_turns", "missing_assistant_turn"}
        audit_cfg = cfg.audit.model_copy(update={"mask_pii": False, "balance": "none"})
        splits, fixes = apply_fixes(dict(frames), report, audit_cfg, cfg.train.seed)
        if cfg.data.drop_missing or cfg.audit.on_issue == "fix":
            rows = [r for f in findings if f["check"] in fixable for r in f["rows"]]
            splits, n = drop_rows(splits, rows)
            fixes.append({"fix": "drop_incomplete", "rows": n, "detail": "conversations with an empty turn or no "
                                                                        "assistant answer"})
            report["blocking"] = [b for b in report["blocking"] if b not in fixable]
        if cfg.audit.mask_pii:
            n = 0
            for split, df in splits.items():
                splits[split], changed = mask_conversations(df)
                n += changed
            fixes.append({"fix": "mask_pii", "rows": n, "detail": "e-mail addresses, phone and card numbers masked"})
        report["fixes"] = fixes
        for split, df in splits.items():
            if df.empty:
                raise UserError(f"data audit: no {split} conversations left after the fixes")
        return TaskData(splits=splits, labels=[], data_report=data.data_report), report

    def profile(self, data: TaskData) -> dict:
        train = data.splits["train"]
        return {"conversations": len(train),
                "assistant_turns": int(train["messages"].map(
                    lambda ms: sum(m["role"] == "assistant" for m in ms)).sum()),
                "median_words": float(train["text"].str.split().str.len().median())}

    # -- model -----------------------------------------------------------------------------
    def prepare(self, cfg: RunConfig, data: TaskData, memo: Memo | None = None) -> Prepared:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        memo = memo or Memo(enabled=False)
        resolved = resolve_model(cfg.model.name)
        kwargs = ModelRef.from_config(cfg.model, resolved.source).from_pretrained_kwargs()
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(resolved.source, dtype=torch.float32, **kwargs)
        except OSError as err:
            if resolved.kind == "hub":
                raise hub_error(cfg.model.name, err) from None
            raise UserError(f"model.name = {cfg.model.name!r}: cannot load a causal LM from {resolved.source} "
                            f"({str(err).splitlines()[0]})") from None
        template = chat.set_template(tokenizer, cfg.sft.chat_template)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.use_cache = False  # a cache turns off packed-sequence masking, and training needs none
        if model.generation_config is None:
            model.generation_config = GenerationConfig()
        stop_id = chat.stop_token(tokenizer, model.generation_config)
        eos = model.generation_config.eos_token_id
        if eos is not None and stop_id not in ([eos] if isinstance(eos, int) else eos):
            raise UserError(f"generation_config.eos_token_id = {eos}, but assistant turns end with "
                            f"{tokenizer.convert_ids_to_tokens(stop_id)!r} (id {stop_id}): generation would not stop "
                            "where training taught the model to stop; fix the model's generation_config.json")
        model.generation_config.eos_token_id = stop_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        if cfg.model.dropout is not None and hasattr(model.config, "attention_dropout"):
            model.config.attention_dropout = cfg.model.dropout
        model = apply_method(model, cfg.train.method, cfg.train.lora, task_type="CAUSAL_LM")

        limit = min(int(getattr(model.config, "max_position_embeddings", 2048) or 2048), 8192)
        max_length = cfg.model.max_length or min(limit, 1024)
        if max_length > limit:
            raise UserError(f"model.max_length = {max_length}: this model takes at most {limit} tokens")
        tokens_key = key(audit_key(cfg, self), cfg.sft.model_dump(mode="json"), resolved.source, cfg.model.revision,
                         cfg.model.trust_remote_code, max_length)
        encoded, lengths_report = memo.get("tokens", tokens_key,
                                           lambda: self._encode(tokenizer, data, stop_id, max_length, cfg))
        spans = chat.check_stops(tokenizer, [(e["input_ids"], e["labels"]) for e in encoded["train"][:64]], stop_id)
        train = chat.pack(encoded["train"], max_length) if cfg.sft.packing else encoded["train"]
        return Prepared(model=model, encoded={**encoded, "train": train},
                        lengths=[len(e["input_ids"]) for e in train], collate=chat.ChatCollator(tokenizer.pad_token_id),
                        preprocessor=tokenizer,
                        resolved={"model_source": resolved.source, "model_kind": resolved.kind,
                                  "max_length": max_length, "chat_template": template,
                                  "stop_token": tokenizer.convert_ids_to_tokens(stop_id), "stop_token_id": stop_id,
                                  "stop_check": f"{spans} assistant turns of real training examples end with it",
                                  "packed_rows": len(train) if cfg.sft.packing else None, **lengths_report})

    def _encode(self, tokenizer, data: TaskData, stop_id: int, max_length: int, cfg: RunConfig):
        """Encode every split; conversations over max_length are truncated or dropped (sft.overlong)."""
        encoded, over = {}, {}
        for split, df in data.splits.items():
            rows = []
            over[split] = []
            for msgs, row in zip(df["messages"], df[ROW]):
                ids, labels = chat.encode_conversation(tokenizer, msgs, stop_id, cfg.sft.train_on_prompt)
                if len(ids) > max_length:
                    over[split].append(int(row))
                    if cfg.sft.overlong == "drop":
                        continue
                    ids, labels = ids[:max_length], labels[:max_length]
                if all(lab == chat.IGNORE for lab in labels[1:]):
                    continue  # truncation left no answer token to learn from
                rows.append({"input_ids": ids, "labels": labels, "row": int(row)})  # row: for per-example files
            if not rows:
                raise UserError(f"{split}: no conversation fits model.max_length = {max_length} tokens with an "
                                "answer left; raise model.max_length")
            encoded[split] = rows
        from tunesmith.data.audit import WARNING, finding

        rows = [{"split": s, "row": r} for s, rs in over.items() for r in rs]
        verb = "dropped" if cfg.sft.overlong == "drop" else "truncated"
        overlong = finding("overlong", WARNING, rows, f"{len(rows)} conversations exceed model.max_length = "
                           f"{max_length} tokens and were {verb} (sft.overlong)" if rows else
                           f"every conversation fits in {max_length} tokens")
        return encoded, {"overlong": {s: {"count": len(r), "rows": r[:20]} for s, r in over.items()},
                         "overlong_policy": cfg.sft.overlong, "audit_findings": [overlong]}

    # -- objective -------------------------------------------------------------------------
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch, use_cache=False).loss

    def logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs, use_cache=False).logits

    def validate(self, cfg: RunConfig, data: TaskData, prepared: Prepared, model, accelerator) -> dict:
        from tunesmith.evaluate.generation import loss_summary, response_losses

        sums, counts = response_losses(model, prepared.encoded["validation"], prepared.collate,
                                       cfg.train.eval_batch_size, accelerator)
        return loss_summary(sums, counts)

    # -- after training ----------------------------------------------------------------------
    def finish(self, cfg: RunConfig, data: TaskData, prepared: Prepared, accelerator, training: dict,
               run_dir: Path) -> dict:
        """Tuned against base model (response loss, generated answers), then the model, results and report."""
        from tunesmith.evaluate import generation as G

        model, tokenizer = prepared.model, prepared.preprocessor
        splits = ["validation", "test"] if cfg.eval.test else ["validation"]
        samples = G.held_out_prompts(data.splits["test"]["messages"], cfg.sft.eval_generations) if cfg.eval.test \
            else []
        ref = ModelRef.from_config(cfg.model, prepared.resolved["model_source"])
        compared = G.compare_with_base(
            model, chat.base_model(accelerator.unwrap_model(model), ref), tokenizer,
            {s: prepared.encoded[s] for s in splits},
            lambda m, examples: G.response_losses(m, examples, prepared.collate, cfg.train.eval_batch_size,
                                                  accelerator),
            samples, prepared.resolved["stop_token_id"], cfg.sft.max_new_tokens, accelerator, cfg.eval, cfg.train.seed)
        if not accelerator.is_main_process:
            return {}
        answers = compared.pop("answers", None)
        tuned = compared.pop("tuned_losses")
        results: dict = {"task": cfg.task, "model": cfg.model.name, "method": cfg.train.method, "labels": [],
                         "training": training, "chat_template": prepared.resolved["chat_template"],
                         "stop_token": prepared.resolved["stop_token"], **compared}
        if answers is not None:
            table = pd.DataFrame({"prompt": [s["prompt"][-1]["content"] for s in samples],
                                  "reference": [s["reference"] for s in samples], **answers})
            tmp = run_dir / ".generations.csv.tmp"
            table.to_csv(tmp, index=False)
            tmp.replace(run_dir / "generations.csv")
        # per-conversation validation losses: a study compares two trials on the same conversations
        losses = pd.DataFrame({"row": [e["row"] for e in prepared.encoded["validation"]],
                               "loss_sum": tuned["validation"][0], "tokens": tuned["validation"][1].astype(int)})
        tmp = run_dir / ".validation_losses.csv.tmp"
        losses.to_csv(tmp, index=False)
        tmp.replace(run_dir / "validation_losses.csv")
        self.save(accelerator.unwrap_model(model), prepared, run_dir / "model")
        atomic_write_json(run_dir / "results.json", results)
        if cfg.eval.test:
            from tunesmith.evaluate.report import write_report

            write_report(run_dir)
        return results

    def save(self, model: torch.nn.Module, prepared: Prepared, folder: Path) -> None:
        """The merged model with its tokenizer (chat template included) and a generation config that
        stops on the end-of-turn token; a LoRA run also keeps adapter/."""
        model.config.use_cache = True  # off for training only
        save_model(model, prepared.preprocessor, folder)

