"""Request and response bodies (pydantic), so the OpenAPI schema states every route's shape and limits.

Request models are built per app: the item length and batch limits of that server appear in its
schema as maxLength / maxItems, and pydantic enforces them (422 naming the item).
"""
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import Annotated


class ErrorResponse(BaseModel):
    """Error body of the classification and health routes (text-embeddings-inference's shape; the Open
    Inference Protocol's `{"error": ...}` is part of it)."""
    error: str
    error_type: str


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | str | None = None


class OpenAIError(BaseModel):
    """Error body of the /v1 routes, as OpenAI clients expect it."""
    error: OpenAIErrorDetail


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool
    detail: str | None = Field(None, description="Why the server is not ready yet.")


# ---- classification: text-embeddings-inference's /predict


class Score(BaseModel):
    label: str
    score: float = Field(description="Temperature-calibrated probability.")


def predict_request(max_items: int, max_chars: int, input_name: str) -> type[BaseModel]:
    Item = Annotated[str, StringConstraints(max_length=max_chars)]
    what = "a text" if input_name == "text" else "an image file (PNG, JPEG, ...) encoded in base64"

    class PredictRequest(BaseModel):
        inputs: Item | Annotated[list[Item], Field(min_length=1, max_length=max_items)] = Field(
            description=f"One input or a list of inputs; each is {what}.")
        return_all_scores: bool = Field(False, description="Every label's probability (highest first), not only "
                                        "the top one.")
        model_config = ConfigDict(json_schema_extra={"examples": [{"inputs": "I still have not received my card"}]}
                                  if input_name == "text" else None)

    return PredictRequest


# ---- classification: Open Inference Protocol v2


class TensorSpec(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class Interval(BaseModel):
    value: float
    low: float
    high: float
    level: float


class TestMetrics(BaseModel):
    n: int = Field(description="Test rows.")
    accuracy: float
    macro_f1: float
    intervals: dict[str, Interval] = Field(description="Bootstrap intervals of accuracy and macro-F1.")
    versus_best_baseline: str | None = Field(None, description="Verdict of the paired test against the best "
                                             "baseline.")


class SplitFingerprint(BaseModel):
    rows: int
    sha256: str


class ModelParameters(BaseModel):
    task: str
    labels: list[str]
    calibration_temperature: float
    fingerprint: dict[str, SplitFingerprint] = Field(description="Rows and hash of each split (splits.json).")
    metrics: TestMetrics | None = Field(None, description="Held-out test metrics (results.json).")
    served_file: str = Field(description="What answers, relative to the run folder: model/ (--backend torch) or "
                             "export/model.onnx or export/model.int8.onnx (--backend onnx).")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parameters: ModelParameters


class ModelReady(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class InferOutputRequest(BaseModel):
    name: str


def infer_request(max_items: int, max_chars: int, input_name: str) -> type[BaseModel]:
    Item = Annotated[str, StringConstraints(max_length=max_chars)]

    class InferInput(BaseModel):
        name: str = Field(description=f"Tensor name ({input_name!r}; any name is accepted).")
        shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=2)] = Field(
            description="[N] or [N, 1].")
        datatype: Literal["BYTES"]
        data: Annotated[list[Item], Field(min_length=1, max_length=max_items)] = Field(
            description="Texts" if input_name == "text" else "Image files encoded in base64")
        parameters: dict[str, Any] | None = None

    class InferRequest(BaseModel):
        id: str | None = None
        parameters: dict[str, Any] | None = None
        inputs: Annotated[list[InferInput], Field(min_length=1, max_length=1)]
        outputs: list[InferOutputRequest] | None = Field(None, description="Subset of 'label', 'score', "
                                                         "'probabilities' to return (default: all).")

    return InferRequest


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[str] | list[float]


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[InferOutput]


# ---- chat: OpenAI-compatible


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


def chat_request(max_chars: int, max_new_tokens: int, name: str) -> type[BaseModel]:
    Content = Annotated[str, StringConstraints(max_length=max_chars)]

    class ChatMessage(BaseModel):
        role: Literal["system", "user", "assistant"]
        content: Content | Annotated[list[TextPart], Field(max_length=64)]

    class StreamOptions(BaseModel):
        include_usage: bool = False

    class ChatCompletionRequest(BaseModel):
        model: str = Field(description="The served model's name (GET /v1/models).", json_schema_extra={"enum": [name]})
        messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=256)]
        max_tokens: int | None = Field(None, ge=1, le=max_new_tokens, description="Longest answer in tokens "
                                       f"(default {max_new_tokens}).")
        temperature: float = Field(1.0, ge=0.0, le=2.0, description="0: greedy.")
        stop: Annotated[str, StringConstraints(min_length=1, max_length=64)] | Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(max_length=4)] | None = None
        stream: bool = False
        stream_options: StreamOptions | None = None
        seed: int | None = Field(None, ge=0, le=2 ** 63 - 1)
        model_config = ConfigDict(json_schema_extra={"examples": [
            {"model": name, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32}]})

    return ChatCompletionRequest


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
