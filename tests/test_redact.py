"""Storage URLs are written and printed with their credentials masked."""
from __future__ import annotations

import pytest

from tunesmith.redact import mask_url


@pytest.mark.parametrize("url, masked", [
    ("postgresql://user:secret@db.example.com/optuna", "postgresql://user:***@db.example.com/optuna"),
    ("postgresql+psycopg2://tuner:p%40ss@db:5432/optuna?sslmode=require",
     "postgresql+psycopg2://tuner:***@db:5432/optuna?sslmode=require"),
    ("mysql://u@h/db?password=hunter2&charset=utf8", "mysql://u@h/db?charset=utf8&password=***"),
    ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),  # nothing to hide: unchanged
    ("mysql://u@h/db", "mysql://u@h/db"),
    ("not-sqlalchemy://user:secret@host/db", "not-sqlalchemy://user:***@host/db"),
    (None, None),
])
def test_mask_url_hides_passwords(url, masked):
    assert mask_url(url) == masked


def test_unparseable_urls_are_masked_by_pattern():
    # SQLAlchemy rejects a port that is not a number: the password is still hidden
    out = mask_url("postgresql://user:secret@host:notaport/db?token=abc")
    assert "secret" not in out and "abc" not in out and out.startswith("postgresql://user:***@host")
