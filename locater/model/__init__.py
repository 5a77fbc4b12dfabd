"""Locater model parts (one module per role) and the composing :class:`Locater`."""

from locater.model.build import build_model_from_section
from locater.model.loading import build_model, from_official, load_model
from locater.model.locater import Locater, LocaterState, StepOutput

__all__ = [
    "Locater",
    "LocaterState",
    "StepOutput",
    "build_model",
    "build_model_from_section",
    "from_official",
    "load_model",
]
