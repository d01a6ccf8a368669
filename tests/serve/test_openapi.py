"""Property-based fuzzing of each app's own OpenAPI schema (schemathesis): requests generated from
the schema never get a 5xx, and every answer matches what the schema documents for it (status
code, content type, headers, body)."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from tunesmith.serve import create_app



@schemathesis.check
def no_server_error(ctx, response, case):
    """A 5xx is a failure, except a readiness route's documented 503 while the warm-up pass still runs (the
    fuzzer may ask before the model has answered once; status_code_conformance still checks it is documented)."""
    if response.status_code == 503 and case.operation.path.endswith("/ready"):
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
# Left out on purpose: positive_data_acceptance. A schema-valid request can still be refused for a
# reason a schema cannot state (an unknown model name: 404; a tensor shape that does not match its
# data, a conversation longer than the context: 422), and those answers are checked above.


def consistent_shape(case) -> None:
    """A tensor's shape must match its data, which a schema cannot say: random shapes would almost all
    get 422. Half the generated infer requests get a matching shape, so the fuzzer reaches the model."""
    tensors = case.body.get("inputs") if isinstance(case.body, dict) else None
    if isinstance(tensors, list) and tensors and isinstance(tensors[0], dict):
        shape, data = tensors[0].get("shape"), tensors[0].get("data")
        if isinstance(shape, list) and shape and isinstance(shape[0], int) and isinstance(data, list) \
                and shape[0] % 2 == 0:
            tensors[0]["shape"] = [len(data)]


def fuzz(app, examples: int) -> list[str]:
    """Every operation of the app's schema, `examples` generated requests each; returns the
    operations exercised."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def check(case):
                consistent_shape(case)
                case.call_and_validate(checks=CHECKS)

            check()
            seen.append(operation.label)
    finally:
        from schemathesis.python.asgi import shutdown_lifespans

        shutdown_lifespans()  # schemathesis started the app's lifespan (and its worker): stop it
    return seen


def answered(app, route: str, method: str, status: str) -> float:
    registry = app.state.server.metrics.registry
    return registry.get_sample_value("tunesmith_requests_total",
                                     {"route": route, "method": method, "status": status}) or 0.0


def test_classification_app_conforms_to_its_schema(text_run):
    app = create_app(text_run, max_item_chars=200, max_batch=4)
    seen = fuzz(app, examples=25)
    assert set(seen) >= {"POST /predict", "POST /v2/models/{name}/infer", "GET /v2/models/{name}",
                         "GET /health/ready", "GET /metrics"}
    # the fuzzer got past validation into the model, not only refusals
    assert answered(app, "/predict", "POST", "200") > 5 and answered(app, "/v2/models/{name}/infer", "POST", "200") > 5


def test_chat_app_conforms_to_its_schema(chat_run):
    app = create_app(chat_run, max_new_tokens=4, max_item_chars=200)
    seen = fuzz(app, examples=25)
    assert set(seen) >= {"POST /v1/chat/completions", "GET /v1/models"}
    assert answered(app, "/v1/chat/completions", "POST", "200") > 5


@pytest.mark.parametrize("path", ["/predict", "/v2/models/{name}/infer"])
def test_limits_are_stated_in_the_schema(text_run, path):
    from fastapi.testclient import TestClient

    doc = TestClient(create_app(text_run, max_item_chars=300, max_batch=7)).get("/openapi.json").json()
    text = str(doc)
    assert "'maxLength': 300" in text and "'maxItems': 7" in text
    responses = doc["paths"][path]["post"]["responses"]
    assert {"200", "413", "422", "429", "503", "504"} <= set(responses)
    assert responses["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
