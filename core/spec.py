"""The feature spec: data that defines every model input, and the input model built from it.

The spec file (specs/*.json) is the single source of truth for the form, validation,
out-of-distribution limits and the model card's tables. Training copies it into each artefact
and adds the validated ranges that the training data really covered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)

from core.errors import InvalidInput, SpecError

PATIENT_REF = "patient_ref"
WHOLE_PAYLOAD = "(payload)"  # the field of a problem with the payload as a whole
WHOLE_ROW = "(row)"  # ... with a row of a file as a whole (too many or too few values)
MAX_ECHO = 80  # characters of a rejected value echoed back in an error
CLEANING_RECIPES = ("hfref_spironolactone_export", "clean")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One model input: how to ask for it, what is physically possible, what was validated."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    unit: str = ""
    type: Literal["number", "integer", "boolean", "category"]
    required: bool
    help: str = ""
    hard_min: float | None = None
    hard_max: float | None = None
    categories: list[str] | None = None
    # Added by training to the artefact's copy:
    validated_min: float | None = None
    validated_max: float | None = None
    validated_categories: list[str] | None = None

    @model_validator(mode="after")
    def _limits_fit_type(self) -> Feature:
        numeric = self.type in ("number", "integer")
        if numeric and (self.hard_min is None or self.hard_max is None):
            raise ValueError(f"{self.name}: numeric features need hard_min and hard_max")
        if numeric and self.hard_min >= self.hard_max:
            raise ValueError(f"{self.name}: hard_min must be below hard_max")
        if self.type == "category" and not self.categories:
            raise ValueError(f"{self.name}: category features need a non-empty categories list")
        if self.type == "boolean" and not self.required:
            raise ValueError(f"{self.name}: boolean features must be required (ask yes or no)")
        return self

    @property
    def numeric(self) -> bool:
        return self.type in ("number", "integer")

    def describe_validated(self) -> str:
        """The validated range in words, e.g. '18-120 mL/min/1.73m2'."""
        if self.numeric and self.validated_min is not None:
            return f"{_fmt(self.validated_min)}-{_fmt(self.validated_max)} {self.unit}".strip()
        if self.type == "category" and self.validated_categories:
            return ", ".join(self.validated_categories)
        return ""


class Outcome(_Strict):
    name: str
    label: str
    definition: str
    horizon_days: int = Field(gt=0)


class PatientReference(_Strict):
    label: str
    help: str = ""
    max_length: int = Field(default=64, ge=4, le=256)


class RoutingPolicy(_Strict):
    """Targets the routing rule is fitted to at training time."""

    low_risk_event_rate_target: float = Field(gt=0, lt=1)
    confidence_level: float = Field(default=0.975, gt=0.5, lt=1)
    novelty_quantile: float = Field(default=0.995, gt=0.5, lt=1)
    validated_range_quantiles: tuple[float, float] = (0.005, 0.995)


class Spec(_Strict):
    """A whole feature spec file."""

    spec_version: int
    model_name: str
    description: str
    synthetic: bool
    intended_use: str
    intended_users: str
    out_of_scope: list[str] = Field(min_length=1)
    cleaning: Literal[CLEANING_RECIPES]  # type: ignore[valid-type]
    outcome: Outcome
    patient_reference: PatientReference
    action_threshold: float = Field(gt=0, lt=1)
    action: str
    routing: RoutingPolicy
    features: list[Feature] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Spec:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {', '.join(dupes)}")
        if PATIENT_REF in names:
            raise ValueError(f"'{PATIENT_REF}' is reserved for the patient reference")
        return self

    @cached_property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        return next(f for f in self.features if f.name == name)

    @cached_property
    def input_model(self) -> type[BaseModel]:
        return _build_input_model(self)

    @cached_property
    def list_adapter(self) -> TypeAdapter:
        return TypeAdapter(list[self.input_model])


def load_spec(path: Path | str) -> Spec:
    """Read and check a spec file; SpecError names the problem."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"spec file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec file {path} is not valid JSON: {exc}") from exc
    return parse_spec(raw, source=str(path))


def parse_spec(raw: Any, *, source: str = "spec") -> Spec:
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: "
            + ("unknown field" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        )
        raise SpecError(f"{source} is not a valid feature spec: {problems}") from exc


def dump_spec(spec: Spec) -> str:
    return json.dumps(spec.model_dump(mode="json", exclude_none=True), indent=2) + "\n"


# ---- the input model -------------------------------------------------------------------


def _reject_bool(value: Any) -> Any:
    # bool is an int subclass; a checkbox value in a number field is an entry error.
    if isinstance(value, bool):
        raise ValueError("must be a number, not yes/no")
    if isinstance(value, (bytes, bytearray)):
        raise ValueError("must be a number")
    if isinstance(value, str):
        if value.strip() == "":
            return None
        if "_" in value:  # Python reads "5_8" as 58: in a lab value it is a typo
            raise ValueError("must be a number")
    return value


def _reject_non_str(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be one of the listed options (text)")
    return value.strip() or None


def _field_for(feature: Feature) -> tuple[Any, Any]:
    if feature.numeric:
        base = int if feature.type == "integer" else float
        inner = Annotated[base, Field(ge=feature.hard_min, le=feature.hard_max, allow_inf_nan=False)]
        kind = Annotated[inner if feature.required else inner | None, BeforeValidator(_reject_bool)]
    elif feature.type == "boolean":
        kind = bool
    else:
        inner = Literal[tuple(feature.categories)]
        kind = Annotated[inner if feature.required else inner | None, BeforeValidator(_reject_non_str)]
    return (kind, ... if feature.required else None)


def _build_input_model(spec: Spec) -> type[BaseModel]:
    ref = Annotated[
        str,
        Field(
            min_length=1,
            max_length=spec.patient_reference.max_length,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_/.\-]*$",
        ),
    ]
    fields = {f.name: _field_for(f) for f in spec.features}
    return create_model(
        "PatientInput",
        __config__=ConfigDict(extra="forbid", str_strip_whitespace=True),
        patient_ref=(ref, ...),
        **fields,
    )


def validate_payload(spec: Spec, payload: Any) -> tuple[str, dict[str, Any]]:
    """Check one payload against the spec: (patient_ref, features) or InvalidInput listing all problems."""
    if not isinstance(payload, Mapping):
        raise InvalidInput([problem(WHOLE_PAYLOAD, "must be a mapping of field names to values", payload)])
    problems = [problem(safe_repr(k), "field names must be text", k)
                for k in payload if not isinstance(k, str)]
    try:
        model = spec.input_model.model_validate({k: v for k, v in payload.items() if isinstance(k, str)})
    except ValidationError as exc:
        problems += [_translate(spec, e) for e in exc.errors()]
    if problems:
        raise InvalidInput(problems)
    values = model.model_dump()
    return values.pop(PATIENT_REF), values


def validate_many(spec: Spec, payloads: list[Any]
                  ) -> tuple[list[tuple[int, str, dict]], list[tuple[int, list[dict]]]]:
    """validate_payload for a batch: ([(index, patient_ref, features)], [(index, errors)]).

    One pydantic call for the whole list (much cheaper per row); rows it rejects are validated
    again one by one, so their errors are exactly those validate_payload gives."""
    plain = [i for i, p in enumerate(payloads)
             if type(p) is dict and all(type(k) is str for k in p)]
    bad_rows = set(range(len(payloads))) - set(plain)
    try:
        models = dict(zip(plain, spec.list_adapter.validate_python([payloads[i] for i in plain]),
                          strict=True))
    except ValidationError as exc:
        bad_rows |= {plain[e["loc"][0]] for e in exc.errors()}
        ok = [i for i in plain if i not in bad_rows]
        models = dict(zip(ok, spec.list_adapter.validate_python([payloads[i] for i in ok]),
                          strict=True))
    good = []
    for i, model in models.items():
        values = dict(model.__dict__)  # flat model of plain values: same as model_dump()
        good.append((i, values.pop(PATIENT_REF), values))
    errors = []
    for i in sorted(bad_rows):
        try:
            validate_payload(spec, payloads[i])
        except InvalidInput as exc:
            errors.append((i, exc.errors))
    return good, errors


def safe_repr(value: Any) -> str:
    """A short repr that never raises (huge integers, deep nesting, odd objects)."""
    if isinstance(value, str):
        value = value[:MAX_ECHO]  # repr of a huge string costs time and memory for nothing
    try:
        shown = repr(value)
    except (ValueError, RecursionError, TypeError, AttributeError):
        shown = f"<{type(value).__name__}>"
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    return shown if len(shown) <= MAX_ECHO else shown[: MAX_ECHO - 3] + "..."


def problem(field: str, message: str, value: Any) -> dict:
    """One entry of InvalidInput.errors: the field, what is wrong, the value received (short)."""
    field = field.encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_ECHO]
    return {"field": field, "message": message, "value": safe_repr(value)}


def _translate(spec: Spec, err: dict) -> dict:
    field = str(err["loc"][0]) if err["loc"] else WHOLE_PAYLOAD
    feature = next((f for f in spec.features if f.name == field), None)
    kind = err["type"]
    value = err.get("input")
    unit = f" {feature.unit}" if feature and feature.unit else ""
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "is not an input of this model (unknown field)"
    elif kind == "finite_number":
        message = "must be a finite number (NaN and infinity are not accepted)"
    elif kind in ("greater_than_equal", "less_than_equal") and feature:
        message = (
            f"must be between {_fmt(feature.hard_min)} and {_fmt(feature.hard_max)}{unit}; "
            "values outside are not physiologically plausible"
        )
    elif kind in ("float_parsing", "float_type", "int_parsing", "int_type"):
        message = "must be a number"
    elif kind == "int_from_float":
        message = "must be a whole number"
    elif kind == "literal_error" and feature:
        message = "must be one of: " + ", ".join(feature.categories or [])
    elif kind in ("bool_parsing", "bool_type"):
        message = "must be yes or no"
    elif kind == "string_too_long":
        message = f"must be at most {spec.patient_reference.max_length} characters"
    elif kind == "string_pattern_mismatch":
        message = "may contain only letters, digits and - _ / . (no spaces or control characters)"
    elif kind == "string_too_short":
        message = "is required"
    elif kind == "string_type":
        message = "must be text"
    else:
        message = err["msg"].removeprefix("Value error, ")
    return problem(field, message, value)


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:g}"
