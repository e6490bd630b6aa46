"""The scoring endpoint: other systems send texts and get sentiment and emotions back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nlp.analysis import Analysis, EmotionResult, SentimentResult, TextInput
from service.api.deps import ScorerDep, SettingsDep
from service.api.problems import ProblemError
from service.errors import FieldError, field_errors_from_pydantic
from service.pipeline import ModelsUnavailableError, load_analyzer

router = APIRouter(prefix="/v1", tags=["score"])


class ScoreItemIn(BaseModel):
    """One text to score."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    text: str
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")] | None = None

    @field_validator("text")
    @classmethod
    def _usable(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("text contains a NUL byte (\\x00)")
        if not value.strip():
            raise ValueError("text is empty")
        return value


class ScoreRequest(BaseModel):
    items: list[Any] = Field(
        description="Up to 256 items `{id, text, language}`; each is checked on its own."
    )
    sentences: bool = Field(default=False, description="Also score each sentence.")


class LabelProbability(BaseModel):
    label: str
    probability: float


class SentimentOut(BaseModel):
    label: str = Field(description="negative, neutral or positive; for several sentences also mixed.")
    score: float = Field(description="P(positive) - P(negative), in [-1, 1].")
    probabilities: dict[str, float]
    abstained: bool = Field(
        default=False,
        description="True when the model was too unsure to call a polarity (its highest probability is "
        "below the calibration's threshold): the label is then neutral whatever the probabilities lean to.",
    )


class EmotionsOut(BaseModel):
    probabilities: list[LabelProbability] = Field(description="Every GoEmotions label, highest first.")
    detected: list[str] = Field(description="Labels that pass their tuned thresholds.")
    cx: list[LabelProbability] = Field(description="The CX rollup (anger, frustration, ...), highest first.")
    cx_detected: list[str]


class SentenceOut(BaseModel):
    text: str
    start: int
    end: int
    sentiment: SentimentOut
    emotions: EmotionsOut


class ScoredItemOut(BaseModel):
    id: str
    language: str | None = None
    language_confidence: float | None = None
    sentiment: SentimentOut | None = None
    emotions: EmotionsOut | None = None
    sentences: list[SentenceOut] | None = None
    errors: list[FieldError] | None = Field(default=None, description="Why this item was not scored.")


class ModelOut(BaseModel):
    role: str
    name: str
    version: str


class ScoreResponse(BaseModel):
    items: list[ScoredItemOut]
    models: list[ModelOut]
    pipeline_version: str


def sentiment_out(result: SentimentResult) -> SentimentOut:
    """The API view of a sentiment result."""
    return SentimentOut(
        label=result.label,
        score=round(result.score, 4),
        probabilities={label: round(p, 4) for label, p in result.probabilities.items()},
        abstained=result.abstained,
    )


def emotions_out(result: EmotionResult) -> EmotionsOut:
    """The API view of an emotion result."""
    return EmotionsOut(
        probabilities=[
            LabelProbability(label=k, probability=round(v, 4)) for k, v in result.probabilities.items()
        ],
        detected=list(result.detected),
        cx=[LabelProbability(label=k, probability=round(v, 4)) for k, v in result.cx_probabilities.items()],
        cx_detected=list(result.cx_detected),
    )


def scored_out(analysis: Analysis, *, sentences: bool) -> ScoredItemOut:
    """The API view of one analysis."""
    return ScoredItemOut(
        id=analysis.id,
        language=analysis.language,
        language_confidence=round(analysis.language_confidence, 4),
        sentiment=sentiment_out(analysis.sentiment),
        emotions=emotions_out(analysis.emotions),
        sentences=[
            SentenceOut(
                text=s.text,
                start=s.start,
                end=s.end,
                sentiment=sentiment_out(s.sentiment),
                emotions=emotions_out(s.emotions),
            )
            for s in analysis.sentences
        ]
        if sentences
        else None,
    )


@router.post("/score", summary="Score texts: language, sentiment and emotions, per text and per sentence")
def score(body: ScoreRequest, settings: SettingsDep, _caller: ScorerDep) -> ScoreResponse:
    """Score up to 256 texts together; an item that cannot be scored gets its own errors, the rest are scored."""
    if len(body.items) > settings.max_score_items:
        raise ProblemError(
            413,
            f"At most {settings.max_score_items} items per request; this one has {len(body.items)}.",
            slug="batch-too-large",
        )
    try:
        analyzer = load_analyzer(settings)
    except ModelsUnavailableError as exc:
        raise ProblemError(
            503, f"The scoring models are not available: {exc}", slug="models-unavailable"
        ) from exc
    results: list[ScoredItemOut | None] = [None] * len(body.items)
    valid: list[tuple[int, TextInput]] = []
    for index, raw in enumerate(body.items):
        fallback_id = (
            str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") is not None else str(index)
        )
        if not isinstance(raw, dict):
            message = f"an item must be a JSON object, not {type(raw).__name__}"
            results[index] = ScoredItemOut(
                id=fallback_id, errors=[FieldError(field="(root)", message=message)]
            )
            continue
        try:
            item = ScoreItemIn.model_validate(raw)
        except ValidationError as exc:
            results[index] = ScoredItemOut(id=fallback_id, errors=field_errors_from_pydantic(exc.errors()))
            continue
        if len(item.text) > settings.max_text_chars:
            message = f"text is {len(item.text)} characters long; the limit is {settings.max_text_chars}"
            results[index] = ScoredItemOut(id=fallback_id, errors=[FieldError(field="text", message=message)])
            continue
        valid.append((index, TextInput(id=item.id or str(index), text=item.text, language=item.language)))
    analyses = analyzer.analyse([text for _, text in valid]) if valid else []
    for (index, _), analysis in zip(valid, analyses, strict=True):
        results[index] = scored_out(analysis, sentences=body.sentences)
    return ScoreResponse(
        items=[result for result in results if result is not None],
        models=[ModelOut(role=m.role, name=m.name, version=m.version) for m in analyzer.models],
        pipeline_version=analyzer.version,
    )
