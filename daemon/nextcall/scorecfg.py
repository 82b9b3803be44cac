"""``[campaigns.X.scoring]``: the pool score's weights and mode, validated.

The shape and its own rules live in ``ScoringCfg``; ``check_value_fields`` is the one
cross-check that needs the campaign's result codes: a value taken from disposition fields
(``"fields.NAME"``) must name a numeric field that some code of the campaign asks for,
otherwise no disposition could ever set it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .core.model import MODE_ADDRESS, MODE_EXPECTED_VALUE, ResultCode, Scoring

#: where a quote may be read: the record's data, or a disposition's typed fields
SOURCES = ("data.", "fields.")
#: field types a quote's value or chance may have
NUMERIC_TYPES = ("money", "percent", "integer")


class ScoringCfg(BaseModel):
    """``[campaigns.X.scoring]`` (docs/configuration.md, "Scoring")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: float = 100.0
    contact: float = 5.0
    attempt: float = -1.0
    max_attempt_penalty: Annotated[int, Field(ge=0, le=1000)] = 10
    mode: Literal["address", "expected_value"] = "address"
    value_field: str = ""
    chance_field: str = ""
    value: Annotated[float, Field(ge=0, le=1_000_000)] = 1.0

    @model_validator(mode="after")
    def _fields(self) -> ScoringCfg:
        if self.mode == MODE_ADDRESS:
            for key in ("value_field", "chance_field"):
                if getattr(self, key):
                    raise ValueError(f'{key} needs mode = "expected_value"')
            return self
        if not self.value_field:
            raise ValueError('mode = "expected_value" needs value_field ("data.KEY" or '
                             '"fields.NAME")')
        for key in ("value_field", "chance_field"):
            text = getattr(self, key)
            if text and not any(text.startswith(p) and len(text) > len(p) for p in SOURCES):
                raise ValueError(f'{key} must be "data.KEY" or "fields.NAME", got {text!r}')
        source = self.value_field.split(".", 1)[0]
        if self.chance_field and not self.chance_field.startswith(source + "."):
            raise ValueError(f"chance_field must come from the same place as value_field "
                             f"({source}.), got {self.chance_field!r}")
        return self

    def to_core(self) -> Scoring:
        """The core's frozen weights."""
        return Scoring(self.priority, self.contact, self.attempt, self.max_attempt_penalty,
                       self.mode, self.value_field, self.chance_field, self.value)


def check_value_fields(s: ScoringCfg, codes: dict[str, ResultCode]) -> list[tuple[str, str]]:
    """Problems (key, message) of a ``fields.`` value or chance that no code of the
    campaign's set can give as a number."""
    if s.mode != MODE_EXPECTED_VALUE:
        return []
    problems = []
    for key in ("value_field", "chance_field"):
        text = getattr(s, key)
        if not text.startswith("fields."):
            continue
        name = text[len("fields."):]
        types = {f.type for rc in codes.values() for f in rc.fields if f.name == name}
        if not types:
            problems.append((key, f"no result code of the campaign's set has a field "
                                  f"{name!r}"))
        elif not types <= set(NUMERIC_TYPES):
            problems.append((key, f"field {name!r} must be a number "
                                  f"({', '.join(NUMERIC_TYPES)}), not "
                                  f"{', '.join(sorted(types - set(NUMERIC_TYPES)))}"))
    return problems
