"""Gestan's action types, apart from the store so that reading them loads no database
library (``gestan-bridge agenda add --help`` lists them)."""

from __future__ import annotations

from enum import StrEnum


class ActionType(StrEnum):
    """Gestan's action types (glossary in DESIGN.md); only APPOINTMENT is synchronised."""

    APPOINTMENT = "rendez-vous"
    CALL = "appel"
    TASK = "tache"
    LETTER = "courrier"
    EMAIL = "e-mail"
    INTERVENTION = "intervention"
