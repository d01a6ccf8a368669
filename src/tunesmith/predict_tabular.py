"""Predict with a finished tabular run: each row's class (binary: the saved decision threshold applied) and its
probability, or the predicted number; rows are encoded with the saved schema (unseen categories -> missing)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.errors import UserError


def predict_table(run_dir: str | Path, table: pd.DataFrame, source: str = "input") -> pd.DataFrame:
    """`predicted` and, for classes, `probability` (of the predicted class) and, for binary, `score` (of the
    positive class), one row per input row. Extra columns (ids, the target) are ignored."""
    from tunesmith.data.load import ROW
    from tunesmith.data.tabular import Schema, encode, typed_frame
    from tunesmith.models.gbdt import load_model
    from tunesmith.run import load_run
    from tunesmith.tasks.tabular import DECISION, MODEL_DIR, SCHEMA
    from tunesmith.tasks.tabular_finish import decide

    run = load_run(run_dir)
    folder = run.path / MODEL_DIR
    if run.status != "completed" or not (folder / SCHEMA).is_file():
        raise UserError(f"{run.path}: no finished model in {MODEL_DIR}/ (run status: {run.status})")
    schema = Schema.from_json(json.loads((folder / SCHEMA).read_text()))
    lacking = [c.name for c in schema.columns if c.name not in table.columns]
    if lacking:
        raise UserError(f"{source}: no column {lacking[0]!r} (a feature of the model; {len(lacking)} missing); "
                        f"expected columns: {', '.join(c.name for c in schema.columns)}")
    table = table if ROW in table.columns else table.assign(**{ROW: range(2, len(table) + 2)})
    rows = typed_frame(table, schema.columns, source)
    raw = load_model(folder).predict(encode(rows, schema))
    if not schema.labels:
        return pd.DataFrame({"predicted": raw})
    if schema.positive_label is not None:
        pos = schema.labels.index(schema.positive_label)
        probs = np.empty((len(raw), 2))
        probs[:, pos], probs[:, 1 - pos] = raw, 1 - raw
    else:
        probs = raw
    threshold = json.loads((folder / DECISION).read_text())["threshold"]
    out = decide(probs, schema, threshold)
    return pd.DataFrame({"predicted": [schema.labels[i] for i in out["predicted"]], **out["extra"]})
