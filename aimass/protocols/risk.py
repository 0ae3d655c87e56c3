"""Wire types of /v1/risk (an AI Mass extension): training jobs, scoring, rules and alerts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool | None
MAX_EVENT_FIELDS = 100
MAX_LIST_LIMIT = 100


class RiskModelCreate(BaseModel):
    """``POST /v1/risk/models``: train a risk model from a transactions file (CSV or JSONL)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, min_length=1, max_length=64)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    auto_promote: bool = True


class RiskScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=128)
    event: dict[str, Scalar] = Field(max_length=MAX_EVENT_FIELDS)


class TopFeature(BaseModel):
    name: str
    value: float
    contribution: float


class RiskScore(BaseModel):
    object: Literal["risk.score"] = "risk.score"
    model: str
    version: int
    score: float
    decision: Literal["allow", "review", "block"]
    rules: list[str]
    """Names of the rules that fired."""
    top_features: list[TopFeature]
    alert_id: int | None = None


class RiskRule(BaseModel):
    name: str
    when: str
    action: Literal["allow", "review", "block"]


class RiskRulesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[RiskRule] = Field(max_length=100)


class RiskRules(BaseModel):
    object: Literal["risk.rules"] = "risk.rules"
    model: str
    revision: int
    """0: the rules trained with the serving version, never edited."""
    rules: list[RiskRule]
    updated_by: str | None = None
    updated_at: int | None = None


class RiskAlert(BaseModel):
    object: Literal["risk.alert"] = "risk.alert"
    id: int
    model: str
    version: int
    decision: str
    score: float
    event: dict[str, Any]
    rules: list[str]
    top_features: list[TopFeature]
    created_at: int
    acked_at: int | None = None
    acked_by: str | None = None


class RiskAlertList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RiskAlert]
    has_more: bool = False


class RiskWebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")
    model: str | None = Field(default=None, min_length=1, max_length=128)
    """Only this model's alerts (default: every model's)."""
    min_decision: Literal["review", "block"] = "review"


class RiskWebhook(BaseModel):
    object: Literal["risk.webhook"] = "risk.webhook"
    id: str
    url: str
    model: str | None = None
    min_decision: str
    created_at: int
    secret: str | None = None
    """The signing secret: shown once, in the answer to the create call."""
    deliveries: dict[str, int] = Field(default_factory=dict)
    """Outbox rows by status (pending, delivered, failed)."""


class RiskWebhookList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RiskWebhook]


class Deleted(BaseModel):
    id: str
    object: Literal["risk.webhook.deleted"] = "risk.webhook.deleted"
    deleted: bool = True
