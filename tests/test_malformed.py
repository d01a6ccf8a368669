"""A corpus of malformed inputs across every command: each ends with one `error:` line (or click's
usage error for a typo), exit code 2, no traceback, and nothing left that claims to be complete.

The commands run in-process through `tunesmith.cli.main` (fast); the inputs are built once per module.
"""
from __future__ import annotations

import errno
import json
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import make_chats, make_rows, tiny_config
from tunesmith.cli import main
from tunesmith.config import build_config, save_config


def completed_marks(root: Path) -> set[Path]:
    """What claims a finished result under ROOT: completed status files and model/ or adapter/ folders."""
    marks = {p for p in root.rglob("status.json") if '"completed"' in p.read_text()}
    return marks | {p for p in root.rglob("*") if p.is_dir() and p.name in ("model", "adapter")}


def fake_run(folder: Path, cfg: dict, model: Path | None, status: str | None) -> Path:
    """A run folder as fine_tune leaves it (config.yaml, status.json, model/), without training."""
    folder.mkdir(parents=True)
    save_config(build_config(cfg), folder / "config.yaml")
    if status is not None:
        (folder / "status.json").write_text(json.dumps({"status": status}))
    if model is not None:
        shutil.copytree(model, folder / "model")
    return folder


@pytest.fixture(scope="module")
def w(tmp_path_factory, tiny_model, tiny_lm) -> dict:
    """The inputs: good and bad data files, configs and run folders."""
    root = tmp_path_factory.mktemp("inputs")
    good = root / "good.csv"
    make_rows(160, seed=1).to_csv(good, index=False)
    f = {"root": root, "good": good, "model": tiny_model}

    def config(name: str, cfg: dict | str | list) -> Path:
        path = root / name
        path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
        return path

    base = tiny_config(tiny_model, good, root / "runs")
    f["cfg"] = config("cfg.yaml", base)
    f["bad_yaml"] = config("bad.yaml", "task: [unclosed\n")
    f["list_yaml"] = config("list.yaml", "- task\n- model\n")
    f["unknown_field"] = config("unknown.yaml", {**base, "trian": {"epochs": 1}})
    f["escape"] = config("escape.yaml", {**base, "run_name": "../../escaped"})
    f["abs_name"] = config("abs.yaml", {**base, "run_name": str(root.parent / "escaped-absolute")})
    (root / "a-file").write_text("not a folder")
    f["out_file"] = config("out-file.yaml", {**base, "output_dir": str(root / "a-file"), "run_name": None})
    f["out_under_file"] = config("out-under.yaml", {**base, "output_dir": str(root / "a-file" / "runs")})
    f["tune_empty"] = config("tune-empty.yaml", base)
    space = {"space": {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
             "n_trials": 2}
    f["tune"] = config("tune.yaml", {**base, "tune": space})
    f["tune_escape"] = config("tune-escape.yaml", {**base, "tune": {**space, "study_name": "../study"}})
    f["tune_bad_storage"] = config("tune-storage.yaml", {**base, "tune": {**space, "storage": "notadb://x"}})

    def data(name: str, content: str | bytes) -> Path:
        path = root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    f["empty_csv"] = data("empty.csv", "")
    f["header_only"] = data("header.csv", "text,label\n")
    f["no_label_col"] = data("nolabel.csv", "text,category\nhello,a\nbye,b\n")
    f["latin1"] = data("latin1.csv", b"text,label\ncaf\xe9 ok,a\n")
    f["ragged"] = data("ragged.csv", 'text,label\n"unclosed quote,a\nb,c,d,e\n')
    f["bad_jsonl"] = data("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": \n')
    f["jsonl_list"] = data("list.jsonl", '["a", "x"]\n')
    f["bad_parquet"] = data("bad.parquet", b"PAR1 definitely not parquet")
    f["txt"] = data("data.txt", "hello\n")
    f["one_class"] = data("one.csv", "text,label\n" + "".join(f"good text {i},pos\n" for i in range(40)))
    f["missing_labels"] = data("missing.csv", "text,label\nfine day,pos\nawful day,\n")
    f["new_texts"] = data("new.csv", "body\nsome text\n")
    f["unknown_labels"] = data("unknown-labels.csv", "text,label\ngreat,pos\nbad,zebra\n")

    imgs = root / "images"
    for label in ("a", "b"):
        (imgs / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((16, 16), 10 * i + (120 if label == "b" else 0), np.uint8)).save(
                imgs / label / f"{i}.png")
    (imgs / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    f["images"] = imgs
    (root / "no-images" / "a").mkdir(parents=True)
    f["no_images"] = root / "no-images"
    f["bad_npz"] = data("bad.npz", b"PK not a zip")
    image_cfg = {"task": "image-classification", "output_dir": str(root / "runs"),
                 "model": {"name": "test_efficientnet"}, "image": {"size": 32}}
    f["image_broken"] = config("image-broken.yaml", {**image_cfg, "data": {"train": str(imgs)}})
    f["image_empty"] = config("image-empty.yaml", {**image_cfg, "data": {"train": str(root / "no-images")}})
    f["image_npz"] = config("image-npz.yaml", {**image_cfg, "data": {"train": str(f["bad_npz"])}})
    f["image_lora"] = config("image-lora.yaml", {**image_cfg, "data": {"train": str(imgs)},
                                                  "train": {"method": "lora"}})

    chats = make_chats(30)
    chats[4] = {"messages": "not a list of turns"}
    f["bad_chats"] = data("chats.jsonl", "".join(json.dumps(c) + "\n" for c in chats))
    roles = make_chats(30)
    roles[2]["messages"][0]["role"] = "wizard"
    f["bad_roles"] = data("roles.jsonl", "".join(json.dumps(c) + "\n" for c in roles))
    sft = {"task": "sft", "model": {"name": str(tiny_lm), "max_length": 64}, "output_dir": str(root / "runs"),
           "run_name": "sft"}
    f["sft_chats"] = config("sft-chats.yaml", {**sft, "data": {"train": str(f["bad_chats"])}})
    f["sft_roles"] = config("sft-roles.yaml", {**sft, "data": {"train": str(f["bad_roles"])}})
    f["sft_probe"] = config("sft-probe.yaml", {**sft, "data": {"train": str(f["bad_roles"])},
                                                "train": {"method": "linear-probe"}})

    runs = root / "runs"
    f["done"] = fake_run(runs / "done", base, tiny_model, "completed")
    f["killed"] = fake_run(runs / "killed", base, tiny_model, "running")
    f["failed"] = fake_run(runs / "failed", base, tiny_model, "failed")
    f["no_status"] = fake_run(runs / "no-status", base, tiny_model, None)
    f["sft_killed"] = fake_run(runs / "sft-killed", {**sft, "data": {"train": str(good)}}, tiny_lm, "running")
    f["bad_status"] = fake_run(runs / "bad-status", base, tiny_model, "completed")
    (f["bad_status"] / "status.json").write_text('{"status": "compl')
    f["bad_run_config"] = fake_run(runs / "bad-config", base, None, "completed")
    (f["bad_run_config"] / "config.yaml").write_text("task: [\n")
    f["bad_results"] = fake_run(runs / "bad-results", base, None, "completed")
    (f["bad_results"] / "results.json").write_text("{")
    f["not_a_run"] = root / "not-a-run"
    f["not_a_run"].mkdir()
    f["before"] = completed_marks(root)
    return f


def s(x) -> str:
    return str(x)


# (id, argv from the inputs and a scratch folder, a piece of the expected message, exit code)
CASES = [
    # configs and overrides
    ("config-missing", lambda w, t: ["train", s(t / "nope.yaml")], "config file not found", 2),
    ("config-not-yaml", lambda w, t: ["train", s(w["bad_yaml"])], "not valid YAML", 2),
    ("config-a-list", lambda w, t: ["train", s(w["list_yaml"])], "expected a mapping", 2),
    ("config-unknown-field", lambda w, t: ["train", s(w["unknown_field"])], "unknown field 'trian'", 2),
    ("config-run-name-escapes", lambda w, t: ["train", s(w["escape"])], "run_name = '../../escaped'", 2),
    ("config-run-name-absolute", lambda w, t: ["train", s(w["abs_name"])], "escaped-absolute': expected a plain", 2),
    ("override-run-name-escapes", lambda w, t: ["train", s(w["cfg"]), "run_name=../x"], "run_name = '../x'", 2),
    ("override-run-name-empty", lambda w, t: ["train", s(w["cfg"]), "run_name=''"], "run_name = ''", 2),
    ("override-run-name-backslash", lambda w, t: ["train", s(w["cfg"]), "run_name=a\\b"], "plain folder name", 2),
    ("override-no-equals", lambda w, t: ["train", s(w["cfg"]), "train.epochs"], "expected key.sub=value", 2),
    ("override-not-yaml", lambda w, t: ["train", s(w["cfg"]), "train.epochs=[1"],
     "override 'train.epochs=[1': the value is not valid YAML", 2),
    ("override-negative", lambda w, t: ["train", s(w["cfg"]), "train.epochs=-1"], "train.epochs = -1", 2),
    ("override-section-as-value", lambda w, t: ["train", s(w["cfg"]), "train=3"], "train = 3", 2),
    ("override-value-as-section", lambda w, t: ["train", s(w["cfg"]), "task.x=1"],
     "task = {'x': 1}: Input should be a valid string", 2),
    ("override-unknown-key", lambda w, t: ["train", s(w["cfg"]), "train.epoch=2"], "unknown field 'train.epoch'", 2),
    ("config-lora-on-images", lambda w, t: ["train", s(w["image_lora"])],
     ("train.method = 'lora'", "does not apply to task image-classification"), 2),
    ("config-probe-on-sft", lambda w, t: ["train", s(w["sft_probe"])], "train.method = 'linear-probe'", 2),
    # federated
    ("federate-bad-partition", lambda w, t: ["federate", s(w["cfg"]), "federated.partition=dirichlet:-1"],
     "federated.partition = 'dirichlet:-1': dirichlet needs a positive concentration", 2),
    ("federate-bad-strategy", lambda w, t: ["federate", s(w["cfg"]), "federated.strategy=fedsgd"],
     "federated.strategy = 'fedsgd': expected fedavg, fedprox:MU", 2),
    ("federate-partition-and-silo-files", lambda w, t: ["federate", s(w["cfg"]), "federated.partition=iid",
                                                        f"federated.silo_files=[{w['good']},{w['good']}]"],
     "give either partition", 2),
    ("federate-transfer-against-method", lambda w, t: ["federate", s(w["cfg"]), "federated.transfer=head"],
     ("train.method = 'full'", "federated.transfer = 'head'"), 2),
    ("federate-unknown-deployment", lambda w, t: ["federate", s(w["cfg"]), "--deployment", "cloud"],
     "--deployment 'cloud': expected one of simulation, local", 2),
    ("federate-by-missing-column", lambda w, t: ["federate", s(w["cfg"]), "federated.transfer=full",
                                                 f"output_dir={t}", "federated.partition=by-column:branch"],
     "federated.partition = 'by-column:branch'", 2),
    # output paths
    ("output-dir-is-a-file", lambda w, t: ["train", s(w["out_file"])], "output_dir = ", 2),
    ("output-dir-under-a-file", lambda w, t: ["train", s(w["out_under_file"])], "Not a directory", 2),
    ("tune-output-dir-a-file", lambda w, t: ["tune", s(w["tune"]), f"output_dir={w['root'] / 'a-file'}"],
     "a-file/run-study: Not a directory; a file is in the way where a folder is expected", 2),
    ("auto-output-dir-a-file", lambda w, t: ["auto", s(w["good"]), "--label-column", "label", "--time-budget", "5m",
                                             "--output-dir", s(w["root"] / "a-file")], "Not a directory", 2),
    ("resume-not-a-run", lambda w, t: ["train", "--resume", s(w["not_a_run"])], "not a tunesmith run folder", 2),
    ("resume-without-config", lambda w, t: ["train"], "give a config file", 2),
    # data files
    ("data-missing", lambda w, t: ["train", s(w["cfg"]), f"data.train={t / 'nope.csv'}"], "file not found", 2),
    ("data-empty", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['empty_csv']}"], "file is empty", 2),
    ("data-header-only", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['header_only']}"], "no rows", 2),
    ("data-no-label-column", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['no_label_col']}"],
     "no column 'label'", 2),
    ("data-not-utf8", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['latin1']}"], "not valid UTF-8", 2),
    ("data-ragged-csv", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['ragged']}"], "ragged.csv", 2),
    ("data-broken-jsonl", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['bad_jsonl']}"],
     "line 2: not valid JSON", 2),
    ("data-jsonl-not-objects", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['jsonl_list']}"],
     "expected a JSON object", 2),
    ("data-bad-parquet", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['bad_parquet']}"],
     "not a readable Parquet file", 2),
    ("data-unknown-type", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['txt']}"], "unknown file type", 2),
    ("data-a-folder", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['root']}"], "inputs", 2),
    ("data-one-class", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['one_class']}"], "one.csv", 2),
    ("data-missing-labels", lambda w, t: ["train", s(w["cfg"]), f"data.train={w['missing_labels']}"],
     "rows lack text or label", 2),
    # images
    ("images-corrupt", lambda w, t: ["train", s(w["image_broken"])], "broken.png", 2),
    ("images-none", lambda w, t: ["train", s(w["image_empty"])], "no-images", 2),
    ("images-bad-npz", lambda w, t: ["train", s(w["image_npz"])], "bad.npz", 2),
    # chat data
    ("chat-not-turns", lambda w, t: ["train", s(w["sft_chats"])], "line 5", 2),
    ("chat-unknown-role", lambda w, t: ["train", s(w["sft_roles"])], "wizard", 2),
    # audit
    ("audit-missing", lambda w, t: ["audit", s(t / "nope.csv"), "--output", s(t / "a.json")], "file not found", 2),
    ("audit-no-column", lambda w, t: ["audit", s(w["good"]), "--text-column", "body", "--output", s(t / "a.json")],
     "no column 'body'", 2),
    ("audit-threshold-out-of-range", lambda w, t: ["audit", s(w["good"]), "--near-threshold", "5", "--output",
                                                   s(t / "a.json")], "--near-threshold", 2),
    ("audit-output-a-folder", lambda w, t: ["audit", s(w["good"]), "--no-label-errors", "--output", s(t)],
     "is a folder", 2),
    ("audit-model-offline", lambda w, t: ["audit", s(w["good"]), "--model", "no-such-org/no-such-model", "--output",
                                          s(t / "a.json")], "could not load it from the Hugging Face hub", 2),
    ("audit-blocking-findings", lambda w, t: ["audit", s(w["good"]), "--test", s(w["good"]), "--no-label-errors",
                                              "--output", s(t / "a.json")], None, 1),
    # tune: storage URLs and study names
    ("tune-storage-no-such-kind", lambda w, t: ["tune", s(w["tune"]), "--storage", "notadb://x", f"output_dir={t}"],
     "tune.storage = 'notadb://x': unknown database kind", 2),
    ("tune-storage-in-config", lambda w, t: ["tune", s(w["tune_bad_storage"]), f"output_dir={t}"],
     "tune.storage = 'notadb://x'", 2),
    ("tune-storage-garbage", lambda w, t: ["tune", s(w["tune"]), "--storage", "garbage", f"output_dir={t}"],
     "not a database URL", 2),
    ("tune-storage-no-driver", lambda w, t: ["tune", s(w["tune"]), "--storage", "postgresql://u:pw@127.0.0.1:1/x",
                                             f"output_dir={t}"], "postgresql://u:***@127.0.0.1:1/x", 2),
    ("tune-storage-unopenable", lambda w, t: ["tune", s(w["tune"]), "--storage",
                                              f"sqlite:///{t}/no/such/dir/study.db", f"output_dir={t}"],
     "cannot open the database", 2),
    ("tune-study-escapes", lambda w, t: ["tune", s(w["tune"]), "--study", "../escaped", f"output_dir={t}"],
     "--study = '../escaped'", 2),
    ("tune-study-name-escapes", lambda w, t: ["tune", s(w["tune_escape"]), f"output_dir={t}"],
     "tune.study_name = '../study'", 2),
    ("tune-empty-space", lambda w, t: ["tune", s(w["tune_empty"]), f"output_dir={t}"], "tune.space is empty", 2),
    ("tune-bad-timeout", lambda w, t: ["tune", s(w["tune"]), "--timeout", "soon", f"output_dir={t}"],
     "tune.timeout = 'soon'", 2),
    # auto
    ("auto-missing", lambda w, t: ["auto", s(t / "nope.csv"), "--label-column", "label", "--output-dir", s(t)],
     "file not found", 2),
    ("auto-no-label-column", lambda w, t: ["auto", s(w["good"]), "--label-column", "topic", "--output-dir", s(t)],
     "no column 'topic'", 2),
    ("auto-bad-budget", lambda w, t: ["auto", s(w["good"]), "--label-column", "label", "--time-budget", "soon",
                                      "--output-dir", s(t)], "soon", 2),
    # predict and run folders
    ("predict-not-a-run", lambda w, t: ["predict", s(w["not_a_run"]), "--text", "hi"], "not a tunesmith run", 2),
    ("predict-killed-run", lambda w, t: ["predict", s(w["killed"]), "--text", "hi"],
     "did not complete (status: running)", 2),
    ("predict-failed-run", lambda w, t: ["predict", s(w["failed"]), "--text", "hi"], "status: failed", 2),
    ("predict-run-without-status", lambda w, t: ["predict", s(w["no_status"]), "--input", s(w["good"]), "--output",
                                                 s(t / "p.csv")], "status: unknown", 2),
    ("predict-damaged-status", lambda w, t: ["predict", s(w["bad_status"]), "--text", "hi"], "not valid JSON", 2),
    ("predict-damaged-config", lambda w, t: ["predict", s(w["bad_run_config"]), "--text", "hi"], "not valid YAML", 2),
    ("predict-input-missing", lambda w, t: ["predict", s(w["done"]), "--input", s(t / "nope.csv"), "--output",
                                            s(t / "p.csv")], "file not found", 2),
    ("predict-input-no-column", lambda w, t: ["predict", s(w["done"]), "--input", s(w["new_texts"]), "--output",
                                              s(t / "p.csv")], "no column 'text'", 2),
    ("predict-output-a-folder", lambda w, t: ["predict", s(w["done"]), "--input", s(w["good"]), "--output", s(t)],
     "is a folder", 2),
    ("predict-no-output", lambda w, t: ["predict", s(w["done"]), "--input", s(w["good"])], "give --input", 2),
    # eval
    ("eval-not-a-run", lambda w, t: ["eval", s(w["not_a_run"]), "--data", s(w["good"])], "not a tunesmith run", 2),
    ("eval-killed-run", lambda w, t: ["eval", s(w["killed"]), "--data", s(w["good"])], "did not complete", 2),
    ("eval-data-missing", lambda w, t: ["eval", s(w["done"]), "--data", s(t / "nope.csv")], "file not found", 2),
    ("eval-unknown-label", lambda w, t: ["eval", s(w["done"]), "--data", s(w["unknown_labels"])],
     "is not one the model knows", 2),
    # runs
    ("runs-list-no-folder", lambda w, t: ["runs", "list", s(t / "nope")], "no such folder of runs", 2),
    ("runs-list-damaged", lambda w, t: ["runs", "list", s(w["root"] / "runs")], "not valid JSON", 2),
    ("runs-compare-one", lambda w, t: ["runs", "compare", s(w["done"])], "at least two run folders", 2),
    ("runs-compare-not-runs", lambda w, t: ["runs", "compare", s(w["done"]), s(w["not_a_run"])],
     "not a tunesmith run folder", 2),
    # demo, chat, export, models
    ("demo-unknown-task", lambda w, t: ["demo", "--task", "federated", "--output-dir", s(t)],
     "demo --task 'federated'", 2),
    ("chat-not-sft", lambda w, t: ["chat", s(w["done"]), "--prompt", "hi"], "chat needs a run of task sft", 2),
    ("chat-killed-run", lambda w, t: ["chat", s(w["sft_killed"]), "--prompt", "hi"], "did not complete", 2),
    ("export-not-lora", lambda w, t: ["export", s(w["done"]), "--merge"], "no LoRA adapter", 2),
    ("export-killed-run", lambda w, t: ["export", s(w["killed"]), "--merge"], "did not complete", 2),
    ("export-nothing-asked", lambda w, t: ["export", s(w["done"])], "say what to export", 2),
    # serve
    ("serve-not-a-run", lambda w, t: ["serve", s(w["not_a_run"]), "--port", "0"], "not a tunesmith run", 2),
    ("serve-killed-run", lambda w, t: ["serve", s(w["killed"]), "--port", "0"], "did not complete", 2),
    ("serve-key-file-missing", lambda w, t: ["serve", s(w["done"]), "--api-key-file", s(t / "keys.txt")],
     "keys.txt", 2),
]


@pytest.mark.parametrize("argv, expected, code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_is_one_line(w, tmp_path, capsys, argv, expected, code):
    try:
        rc = main(argv(w, tmp_path))
    except BaseException:  # noqa: BLE001 - the point: nothing may escape main
        pytest.fail("escaped main:\n" + traceback.format_exc())
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 2:
        pieces = expected if isinstance(expected, tuple) else (expected,)
        assert len(lines) == 1 and lines[0].startswith("error: ") and all(p in lines[0] for p in pieces), err
    assert "Traceback" not in err
    assert completed_marks(tmp_path) == set() and completed_marks(w["root"]) == w["before"]
    assert not any((w["root"].parent / name).exists() for name in ("escaped", "escaped-absolute", "study"))


class _Names(dict):
    def __missing__(self, key: str) -> Path:
        return Path(key)


def test_the_corpus_covers_every_command():
    commands = {c[1](_Names(), Path("."))[0] for c in CASES}
    assert len(CASES) >= 40
    assert commands == {"train", "audit", "tune", "auto", "predict", "eval", "runs", "demo", "chat", "export", "serve",
                        "federate"}


# a typo gets click's usage line and error, exit code 2: (argv, what the error says)
TYPOS = [(f"{' '.join(argv[:2])} {kind}", argv, said) for kind, cases in {
    "unknown-option": [
        (["train", "--nonsense"], "--nonsense"), (["audit", "x.csv", "--colour"], "--colour"),
        (["tune", "c.yaml", "--trails", "3"], "--trails"), (["auto", "x.csv", "--label", "y"], "--label"),
        (["predict", "run", "--txt", "hi"], "--txt"), (["eval", "run", "--dat", "x.csv"], "--dat"),
        (["runs", "list", "--all"], "--all"), (["runs", "compare", "a", "b", "--paired"], "--paired"),
        (["demo", "--taks", "sft"], "--taks"), (["chat", "run", "--promt", "hi"], "--promt"),
        (["export", "RUN", "--formt", "onnx"], "--formt"),
        (["serve", "run", "--prot", "80"], "--prot"), (["models", "--all"], "--all")],
    "missing-argument": [
        (["audit"], "Missing argument"), (["tune"], "Missing argument"), (["auto", "x.csv"], "--label-column"),
        (["predict"], "Missing argument"), (["eval", "run"], "--data"), (["runs", "compare"], "Missing argument"),
        (["chat"], "Missing argument"), (["export"], "Missing argument"),
        (["train", "--resume"], "requires an argument"),
        (["demo", "--task"], "requires an argument")],
    "bad-value": [
        (["audit", "x.csv", "--near-threshold", "high"], "--near-threshold"), (["tune", "c.yaml", "--trials", "many"],
                                                                             "--trials"),
        (["auto", "x.csv", "--label-column", "l", "--max-trials", "x"], "--max-trials"),
        (["chat", "run", "--max-new-tokens", "lots"], "--max-new-tokens"),
        (["audit", "x.csv", "--max-length", "1.5"], "--max-length"), (["nosuchcommand"], "No such command")],
}.items() for argv, said in cases]


@pytest.mark.parametrize("argv, said", [t[1:] for t in TYPOS], ids=[t[0] for t in TYPOS])
def test_a_typo_gets_the_usage_line_and_exit_2(capsys, argv, said):
    try:
        rc = main(argv)
    except BaseException:  # noqa: BLE001 - nothing may escape main
        pytest.fail("escaped main:\n" + traceback.format_exc())
    err = capsys.readouterr().err
    assert rc == 2, err
    # click has no usage line for an option left without its value (no context at hand): only the error
    usage = "" if "requires an argument" in said else "Usage: tunesmith " + (
        "[OPTIONS] COMMAND" if argv[0] == "nosuchcommand" else argv[0])
    assert err.startswith(usage) and "Error: " in err and said in err, err
    assert "Traceback" not in err


def one_line(capsys, argv: list[str], code: int = 2) -> str:
    """Run the command in-process; it must end with CODE and (for 2) one `error:` line, which is returned."""
    try:
        rc = main(argv)
    except BaseException:  # noqa: BLE001 - nothing may escape main
        pytest.fail("escaped main:\n" + traceback.format_exc())
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 2 or (len(lines) == 1 and lines[0].startswith("error: ")), err
    return lines[0] if lines else ""


def test_a_read_only_output_folder_is_one_line(w, tmp_path, capsys, monkeypatch):
    # the tests run as root, which chmod cannot stop: the refusal is the operating system's, simulated
    read_only = tmp_path / "read-only"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(read_only)):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    line = one_line(capsys, ["train", s(w["cfg"]), f"output_dir={read_only / 'runs'}"])
    assert line == f"error: {read_only / 'runs'}: Permission denied; choose a folder you can write to"
    assert completed_marks(tmp_path) == set()


def _disk_full(*args):
    raise OSError(errno.ENOSPC, "No space left on device")  # as write() reports it: no file name


def test_a_full_disk_while_training_is_one_line_naming_the_file(w, tmp_path, capsys, monkeypatch):
    import tunesmith.io

    monkeypatch.setattr(tunesmith.io.os, "fsync", _disk_full)
    line = one_line(capsys, ["train", s(w["cfg"]), f"output_dir={tmp_path}"])
    assert line == (f"error: {tmp_path / 'run' / 'status.json'}: No space left on device; free some space or "
                    "choose another output folder")
    assert completed_marks(tmp_path) == set() and not list(tmp_path.rglob("*.tmp"))


def _killed(*args):
    raise KeyboardInterrupt


@pytest.mark.parametrize("failure, code, said", [
    (_disk_full, 2, "error: {out}: No space left on device; free some space or choose another output folder"),
    (_killed, 130, ""),  # Ctrl-C: exit code 130, nothing printed
], ids=["disk-full", "killed"])
def test_an_interrupted_predict_output_leaves_the_old_file(w, tmp_path, capsys, monkeypatch, failure, code, said):
    import tunesmith.io

    out = tmp_path / "preds.csv"
    out.write_text("the previous predictions\n")
    monkeypatch.setattr(tunesmith.io.os, "fsync", failure)
    line = one_line(capsys, ["predict", s(w["done"]), "--input", s(w["good"]), "--output", s(out)], code)
    assert line == said.format(out=out)
    assert out.read_text() == "the previous predictions\n"
    assert [p.name for p in tmp_path.iterdir()] == ["preds.csv"]  # no temporary file left behind


def test_runs_without_test_predictions_are_listed_as_not_compared(w, tmp_path, capsys):
    # search trials (eval.test=false) and sft runs share a test split but write no test_predictions.csv
    cfg = tiny_config(w["model"], w["good"], tmp_path)
    a, b = (fake_run(tmp_path / name, cfg, None, "completed") for name in ("trial-0000", "trial-0001"))
    for run in (a, b):
        (run / "splits.json").write_text(json.dumps({"test": {"sha256": "same-rows"}}))
    assert main(["runs", "compare", s(a), s(b)]) == 0
    assert "trial-0001 vs trial-0000: no test predictions to pair: not compared" in capsys.readouterr().out
