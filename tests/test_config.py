from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunesmith.config import RunConfig, build_config, describe_fields, load_config, parse_overrides
from tunesmith.errors import UserError

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_overrides_are_typed_and_nested():
    overrides = ["train.epochs=3", "train.lora.rank=16", "model.name=minilm-l6", "train.max_grad_norm=null"]
    assert parse_overrides(overrides) == {
        "train": {"epochs": 3, "lora": {"rank": 16}, "max_grad_norm": None}, "model": {"name": "minilm-l6"}}


def test_yaml_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "cfg.yaml"
    path.write_text("data: {train: data/train.csv}\n")
    cfg = load_config(path, ["train.epochs=2"])
    assert cfg.data.train == (tmp_path / "sub" / "data" / "train.csv").resolve()
    assert cfg.train.epochs == 2 and cfg.train.method == "auto"


def test_unknown_field_names_the_field_and_the_valid_ones(tmp_path):
    path = write(tmp_path, {"data": {"train": "x.csv"}, "train": {"lr": 0.1}})
    with pytest.raises(UserError) as e:
        load_config(path)
    msg = str(e.value)
    assert "unknown field 'train.lr'" in msg and "learning_rate" in msg and "\n" not in msg


def test_bad_choice_lists_valid_values(tmp_path):
    path = write(tmp_path, {"data": {"train": "x.csv"}})
    with pytest.raises(UserError,
                       match=r"train.method = 'qlora'.*'auto', 'full', 'lora', 'linear-probe' or 'contrastive'"):
        load_config(path, ["train.method=qlora"])
    with pytest.raises(UserError, match=r"train.learning_rate = -1"):
        load_config(path, ["train.learning_rate=-1"])
    with pytest.raises(UserError, match=r"task = 'translation'.*text-classification"):
        load_config(path, ["task=translation"])


def test_missing_train_file_field(tmp_path):
    with pytest.raises(UserError, match="data.train.*required"):
        load_config(write(tmp_path, {"task": "text-classification"}))


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs", "a/b", "a\\b", "..", ".", ""])
@pytest.mark.parametrize("key", ["run_name", "tune.study_name"])
def test_run_and_study_names_stay_inside_output_dir(key, name):
    with pytest.raises(UserError) as err:
        build_config({"data": {"train": "x.csv"}}, [f"{key}='{name}'"])
    assert str(err.value) == f"config: {key} = {name!r}: expected a plain folder name (no /, \\, .. or absolute " \
                             "path; not empty), e.g. my-run"
    assert build_config({"data": {"train": "x.csv"}}, [f"{key}=my-run.v2"])


def test_a_whole_model_check_names_the_field_and_value_not_the_mapping():
    from pydantic import BaseModel, ValidationError, model_validator

    from tunesmith.config import FieldError, format_validation_error

    class Section(BaseModel):
        method: str = "lora"
        size: int = 3

        @model_validator(mode="after")
        def _check(self):
            if self.size > 2:
                raise ValueError("size = 3 is too large for method lora")
            raise FieldError("method", self.method, "does not apply here; use full")

    class Whole(BaseModel):
        train: Section

    for data, expected in [({"train": {}}, "config: train: size = 3 is too large for method lora"),
                           ({"train": {"size": 1}}, "config: train.method = 'lora': does not apply here; use full")]:
        with pytest.raises(ValidationError) as err:
            Whole.model_validate(data)
        assert format_validation_error(err.value) == expected
    with pytest.raises(UserError) as err:
        build_config({"data": {"train": "x"}}, ["tune.space={train.epochs: {type: int, low: 3, high: 1}}"])
    assert str(err.value) == "config: tune.space.train.epochs: a int parameter needs low <= high"


def test_not_yaml_and_not_a_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(bad)


def test_every_field_has_a_description_for_help():
    rows = describe_fields()
    assert {"train.learning_rate", "data.label_column", "train.lora.rank", "model.name"} <= {r[0] for r in rows}
    assert all(desc for _, _, desc in rows)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_validate(example):
    first = example.read_text().splitlines()[0]
    assert first.startswith("# tunesmith "), "every example starts with the command that runs it"
    cfg = load_config(example)
    assert isinstance(cfg, RunConfig)


def test_there_are_examples():
    assert EXAMPLES


def test_validating_a_config_imports_neither_torch_nor_a_task_module():
    """config knows the task names only; each task's own rules load with the task (tunesmith.tasks.configure)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from tunesmith.config import build_config\n"
            "for task in ('text-classification', 'image-classification', 'sft'):\n"
            "    build_config({'task': task, 'data': {'train': 'x.csv'}}, ['train.epochs=2'])\n"
            "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')\n"
            "               or m.startswith('tunesmith.tasks.'))\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
