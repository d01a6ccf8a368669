"""Chat / instruction fine-tuning on a tiny Llama built in the test: data layouts, masks, the stop
token check, packing without cross-contamination, base-vs-tuned evaluation, export and chat."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import build_tiny_lm, make_chats
from tunesmith.cli import main
from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.models import chat
from tunesmith.run import fine_tune


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def sft_config(model, train, out, **train_overrides) -> dict:
    return {"task": "sft", "model": {"name": str(model), "max_length": 64},
            "data": {"train": str(train)},
            "train": {"method": "full", "epochs": 3, "batch_size": 8, "learning_rate": 1e-2, "logging_steps": 2,
                      "seed": 3, **train_overrides},
            "sft": {"eval_generations": 3, "max_new_tokens": 8}, "eval": {"bootstrap_resamples": 200},
            # the generated chats repeat six questions: near-duplicates across splits by design
            "audit": {"on_issue": "warn"},
            "output_dir": str(out), "run_name": "run"}


def test_each_data_layout_becomes_conversations(tmp_path, tiny_lm):
    from tunesmith.tasks import get_task

    task = get_task("sft")
    layouts = {
        "chat.jsonl": [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
                       for i in range(20)],
        "alpaca.jsonl": [{"instruction": f"q{i}", "input": "ctx" if i % 2 else "", "output": f"a{i}"}
                         for i in range(20)],
    }
    for name, rows in layouts.items():
        cfg = build_config(sft_config(tiny_lm, write_jsonl(tmp_path / name, rows), tmp_path))
        data = task.load_data(cfg)
        conv = pd.concat(data.splits.values())["messages"].tolist()
        assert len(conv) == 20 and all([m["role"] for m in c] == ["user", "assistant"] for c in conv)
    assert any(c[0]["content"] == "q1\n\nctx" for c in conv)  # alpaca input follows the instruction
    pd.DataFrame({"question": [f"q{i}" for i in range(20)], "answer": [f"a{i}" for i in range(20)]}).to_csv(
        tmp_path / "qa.csv", index=False)
    cfg = build_config({**sft_config(tiny_lm, tmp_path / "qa.csv", tmp_path),
                        "sft": {"prompt_column": "question", "response_column": "answer",
                                "system_prompt": "Be brief."}})
    conv = task.load_data(cfg).splits["train"]["messages"].tolist()
    assert [m["role"] for m in conv[0]] == ["system", "user", "assistant"] and conv[0][0]["content"] == "Be brief."


def test_bad_chat_rows_name_the_line(tmp_path, tiny_lm):
    rows = make_chats(20)
    rows[6] = {"messages": [{"role": "robot", "content": "beep"}]}
    cfg = sft_config(tiny_lm, write_jsonl(tmp_path / "bad.jsonl", rows), tmp_path)
    with pytest.raises(UserError, match=r"bad.jsonl: line 7: message 1 has role 'robot'; expected one of system"):
        fine_tune(build_config(cfg))
    pd.DataFrame({"text": ["x"] * 20}).to_csv(tmp_path / "plain.csv", index=False)
    with pytest.raises(UserError, match=r"cannot tell the data layout from the columns \(text\)"):
        fine_tune(build_config(sft_config(tiny_lm, tmp_path / "plain.csv", tmp_path)))


def test_loss_covers_assistant_tokens_through_the_stop_token(tiny_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    msgs = [{"role": "user", "content": "What colour is the sky?"},
            {"role": "assistant", "content": "The sky is blue."},
            {"role": "user", "content": "Where is Paris?"}, {"role": "assistant", "content": "Paris is in France."}]
    ids, labels = chat.encode_conversation(tok, msgs, stop)
    spans, current = [], []
    for i, lab in zip(ids, labels):
        if lab != chat.IGNORE:
            current.append(i)
        elif current:
            spans.append(current)
            current = []
    assert [tok.decode(s) for s in spans] == ["The sky is blue.<|im_end|>", "Paris is in France.<|im_end|>"]
    assert chat.check_stops(tok, [(ids, labels)], stop) == 2
    _, everything = chat.encode_conversation(tok, msgs, stop, train_on_prompt=True)
    assert everything == ids


def test_a_stop_token_mismatch_stops_the_run(tmp_path, tiny_lm):
    from transformers import GenerationConfig

    train = write_jsonl(tmp_path / "chat.jsonl", make_chats(30))
    broken = build_tiny_lm(tmp_path / "broken-lm")
    GenerationConfig(eos_token_id=0, pad_token_id=2).save_pretrained(broken)  # <|endoftext|>, not <|im_end|>
    expected = r"generation_config.eos_token_id = 0, but assistant turns end with '<\|im_end\|>'"
    with pytest.raises(UserError, match=expected):
        fine_tune(build_config(sft_config(broken, train, tmp_path / "a")))
    no_end = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}" \
             "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    cfg = sft_config(tiny_lm, train, tmp_path / "b")
    cfg["sft"]["chat_template"] = no_end
    with pytest.raises(UserError, match=r"does not end with the token generation stops on.*never learns to stop"):
        fine_tune(build_config(cfg))


def test_packed_examples_do_not_see_each_other(tiny_lm):
    """Each conversation's loss is the same packed into one row as on its own."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    examples = []
    for row in make_chats(3):
        ids, labels = chat.encode_conversation(tok, row["messages"], stop)
        examples.append({"input_ids": ids, "labels": labels})
    collate = chat.ChatCollator(tok.pad_token_id)

    def token_losses(batch):
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:],
                                                 ignore_index=chat.IGNORE, reduction="none")

    alone = [token_losses(collate([ex]))[0].sum().item() for ex in examples]
    rows = chat.pack(examples, max_length=10_000)
    assert len(rows) == 1 and rows[0]["position_ids"].count(0) == 3
    packed = token_losses(collate(rows))[0]
    starts = [0, len(examples[0]["input_ids"]), len(examples[0]["input_ids"]) + len(examples[1]["input_ids"])]
    ends = starts[1:] + [len(rows[0]["input_ids"])]
    per_example = [packed[s:e - 1].sum().item() for s, e in zip(starts, ends)]
    assert np.allclose(per_example, alone, rtol=1e-4, atol=1e-4)
    # without restarting positions the same row mixes the conversations
    mixed = collate(rows)
    mixed.pop("position_ids")
    assert not np.allclose(token_losses(mixed)[0][starts[1]:ends[1] - 1].sum().item(), alone[1], atol=1e-3)


def test_sft_run_beats_the_base_model_and_reports_it(tmp_path, tiny_lm, capsys):
    train = write_jsonl(tmp_path / "chat.jsonl", make_chats(120))
    cfg = sft_config(tiny_lm, train, tmp_path / "runs")
    cfg["sft"]["packing"] = True
    cfg["model"]["max_length"] = 128
    run = fine_tune(build_config(cfg))
    res = run.results
    assert res["test"]["loss"] < res["test"]["base"]["loss"]
    assert res["test"]["loss_reduction"]["verdict"] == "better, and not by chance"
    report = json.loads((run.path / "data_report.json").read_text())
    assert report["stop_token"] == "<|im_end|>" and report["chat_template"] == "tokenizer"
    assert report["packed_rows"] < report["split_rows"]["train"]  # several conversations per row
    gens = pd.read_csv(run.path / "generations.csv", keep_default_na=False)
    assert list(gens.columns) == ["prompt", "reference", "base", "tuned"] and len(gens) == 3
    # the reported generation scores are those of the answers written side by side
    from tunesmith.evaluate.generation import generation_scores

    for name in ("base", "tuned"):
        again = generation_scores(gens[name].tolist(), gens["reference"].tolist())
        assert {k: res["generation"][name][k] for k in ("exact_match", "token_f1", "rouge_l", "n")} == pytest.approx(
            {k: again[k] for k in ("exact_match", "token_f1", "rouge_l")} | {"n": 3})
    assert gens["tuned"].tolist() != gens["base"].tolist()
    html = (run.path / "report.html").read_text()
    assert "Base vs tuned, side by side" in html and "Did fine-tuning help?" in html
    assert json.loads((run.path / "status.json").read_text())["status"] == "completed"
    # the saved model stops where training taught it to, and `tunesmith chat` (saved model, saved
    # template) answers exactly what the run's evaluation generated in memory
    from transformers import GenerationConfig

    assert GenerationConfig.from_pretrained(run.model_dir).eos_token_id == report["stop_token_id"]
    capsys.readouterr()
    assert main(["chat", str(run.path), "--prompt", gens["prompt"][0], "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.strip() == gens["tuned"][0]


def test_a_base_model_without_template_gets_chatml(tmp_path):
    lm = build_tiny_lm(tmp_path / "plain-lm", chat_template=False)
    run = fine_tune(build_config({**sft_config(lm, write_jsonl(tmp_path / "c.jsonl", make_chats(40)), tmp_path),
                                  "train": {"method": "full", "epochs": 1, "batch_size": 8}}))
    assert run.results["chat_template"] == "chatml"


def test_lora_export_merges_to_the_same_outputs(tmp_path, tiny_lm, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    train = write_jsonl(tmp_path / "chat.jsonl", make_chats(60))
    cfg = sft_config(tiny_lm, train, tmp_path / "runs", method="lora", epochs=1,
                     lora={"rank": 4, "alpha": 8, "dropout": 0.0})
    run = fine_tune(build_config(cfg))
    assert main(["export", str(run.path), "--merge"]) == 0
    ids = torch.tensor([[5, 17, 42, 9, 77, 3]])
    merged = AutoModelForCausalLM.from_pretrained(run.path / "merged").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lm), run.path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)
    # `tunesmith chat` serves the tuned weights (the adapter's outputs), not the base model's
    from tunesmith.generate import ChatModel

    served = ChatModel(run.path)
    prompt = torch.tensor([chat.prompt_ids(served.tokenizer, [{"role": "user", "content": "Where is Paris?"}])])
    with torch.no_grad():
        tuned_logits = adapted(prompt).logits
        assert torch.allclose(served.model(prompt).logits, tuned_logits, atol=1e-5)
        assert not torch.allclose(AutoModelForCausalLM.from_pretrained(tiny_lm)(prompt).logits, tuned_logits, atol=1e-3)
    capsys.readouterr()
    assert main(["chat", str(run.path), "--prompt", "Where is Paris?", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.strip() == served.reply([{"role": "user", "content": "Where is Paris?"}])
    assert main(["predict", str(run.path), "--text", "hello"]) == 2  # one clear line: use chat


def test_sft_audit_blocks_on_empty_and_unanswered_conversations(tmp_path, tiny_lm):
    rows = make_chats(40)
    rows[3]["messages"][1]["content"] = "  "
    rows[9] = {"messages": [{"role": "user", "content": "Anyone there?"}]}
    rows[12] = rows[13] = make_chats(1)[0]  # an exact duplicate
    train = write_jsonl(tmp_path / "chat.jsonl", rows)
    cfg = sft_config(tiny_lm, train, tmp_path / "a")
    cfg["audit"] = {"on_issue": "fail"}
    with pytest.raises(UserError, match=r"empty_turns.*missing_assistant_turn|missing_assistant_turn.*empty_turns"):
        fine_tune(build_config(cfg))
    cfg = sft_config(tiny_lm, train, tmp_path / "b", epochs=1)
    cfg["data"]["drop_missing"] = True  # as audit.on_issue=fix does, without removing the near-leaks too
    run = fine_tune(build_config(cfg))
    audit = json.loads((run.path / "audit.json").read_text())
    found = {f["check"]: f["count"] for f in audit["findings"]}
    # row 4 (an empty answer) counts in both
    assert found["empty_turns"] == 1 and found["missing_assistant_turn"] == 2 and found["exact_duplicates"] >= 1
    assert next(f for f in audit["fixes"] if f["fix"] == "drop_incomplete")["rows"] == 2


def test_overlong_conversations_truncate_or_drop(tmp_path, tiny_lm):
    rows = make_chats(40)
    rows[0]["messages"][1]["content"] = "The sky is blue. " * 40
    train = write_jsonl(tmp_path / "chat.jsonl", rows)
    for policy in ("truncate", "drop"):
        cfg = sft_config(tiny_lm, train, tmp_path / policy, epochs=1)
        cfg["sft"]["overlong"] = policy
        run = fine_tune(build_config(cfg))
        report = json.loads((run.path / "data_report.json").read_text())
        assert sum(v["count"] for v in report["overlong"].values()) == 1 and report["overlong_policy"] == policy
        audit = json.loads((run.path / "audit.json").read_text())
        assert next(f for f in audit["findings"] if f["check"] == "overlong")["count"] == 1


def test_sft_config_is_scored_by_loss(tiny_lm, tmp_path):
    from tunesmith.tasks import configure

    cfg = configure(build_config(sft_config(tiny_lm, tmp_path / "x.jsonl", tmp_path)))
    assert cfg.train.metric_for_best == "loss" and cfg.tune.metric == "loss"
    assert configure(cfg) == cfg  # a resolved config (as saved in a run folder) passes again unchanged
    with pytest.raises(UserError, match=r"^config: train.method = 'linear-probe': does not apply to task sft; use "
                                        r"lora or full$"):
        configure(build_config({**sft_config(tiny_lm, tmp_path / "x.jsonl", tmp_path),
                                "train": {"method": "linear-probe"}}))
    with pytest.raises(UserError, match=r"^config: tune.metric = 'accuracy': task sft is scored by validation loss"):
        configure(build_config(sft_config(tiny_lm, tmp_path / "x.jsonl", tmp_path), ["tune.metric=accuracy"]))
    with pytest.raises(UserError, match=r"^config: train.metric_for_best = 'macro_f1'"):  # before any data loads
        fine_tune(build_config(sft_config(tiny_lm, tmp_path / "missing.jsonl", tmp_path, metric_for_best="macro_f1")))


def test_examples_config_is_the_sft_demo():
    """examples/sft-chatterbot.yaml and `tunesmith demo --task sft` run the same settings."""
    from pathlib import Path

    import yaml

    from tunesmith.demo import sft_demo_settings

    example = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "sft-chatterbot.yaml").read_text())
    assert example == sft_demo_settings()
    build_config(example)  # valid as written
