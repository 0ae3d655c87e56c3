"""Wire types for /v1/images/classifications, and the image item of /v1/embeddings.

An image travels in JSON as ``{"image": "<data URL or base64>"}`` (the shape /v1/embeddings
takes in ``input`` for image models too), or as a file of a multipart form. A classification
answers, per image in the order sent, the ``top_k`` classes with their index in the model's
output, their name and their probability. Types are strict: ``"5"`` is not a number.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class ImageInput(BaseModel):
    """One image: a data URL (``data:image/png;base64,...``) or bare base64 of the file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image: StrictStr = Field(min_length=1)


class ClassificationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1)
    images: list[ImageInput] = Field(min_length=1)
    top_k: StrictInt = Field(default=5, ge=1, le=1000)
    """Classes returned per image, most probable first (at most the model's classes)."""


class ClassificationForm(BaseModel):
    """The text fields of a multipart classification request (the images are its files)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    top_k: int = Field(default=5, ge=1, le=1000)


class ClassLabel(BaseModel):
    index: int
    """The class's position in the model's output."""
    label: str
    """The class's name (its index as text when the model has no labels file)."""
    score: float
    """Probability of the class."""


class ImageClassification(BaseModel):
    object: Literal["image.classification"] = "image.classification"
    index: int
    """Position of the image in the request."""
    labels: list[ClassLabel]


class ImageUsage(BaseModel):
    images: int
    prompt_tokens: int
    """Images counted as prompt units (what usage records and budgets charge)."""
    total_tokens: int


class ClassificationResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[ImageClassification]
    usage: ImageUsage
