"""The input model built from a spec, and validation of payloads against it: every problem
with a payload is reported at once, naming the field, in words a clinician can act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from core.errors import InvalidInput, Problem, plain_message, problem, safe_repr

if TYPE_CHECKING:
    from core.spec import Feature, Spec

PATIENT_REF = "patient_ref"
WHOLE_PAYLOAD = "(payload)"  # the field of a problem with the payload as a whole
WHOLE_ROW = "(row)"  # ... with a row of a file as a whole (too many or too few values)


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


def _whole(value: Any) -> Any:
    # JSON has one kind of number: 70.0 is the integer 70 (as JSON Schema reads it), 70.5 is not.
    value = _reject_bool(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _reject_non_str(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be one of the listed options (text)")
    return value.strip() or None


def _field_for(feature: Feature) -> tuple[Any, Any]:
    if feature.numeric:
        base = int if feature.type == "integer" else float
        inner = Annotated[base, Field(ge=feature.hard_min, le=feature.hard_max, allow_inf_nan=False)]
        kind = Annotated[inner if feature.required else inner | None,
                         BeforeValidator(_whole if base is int else _reject_bool)]
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


def validate_payload(spec: Spec, payload: Any, *, strict: bool = False) -> tuple[str, dict[str, Any]]:
    """Check one payload against the spec: (patient_ref, features) or InvalidInput listing all
    problems. `strict`: JSON types exactly as the API's document has them (a number for a
    number, true or false for a yes/no input); otherwise text is read as a form or a file gives it."""
    if not isinstance(payload, Mapping):
        raise InvalidInput([problem(WHOLE_PAYLOAD, "must be a mapping of field names to values", payload)])
    problems = [problem(safe_repr(k), "field names must be text", k)
                for k in payload if not isinstance(k, str)]
    try:
        model = spec.input_model.model_validate({k: v for k, v in payload.items() if isinstance(k, str)},
                                                strict=strict)
    except ValidationError as exc:
        problems += [_translate(spec, e) for e in exc.errors()]
    if problems:
        raise InvalidInput(problems)
    values = model.model_dump()
    return values.pop(PATIENT_REF), values


def validate_many(spec: Spec, payloads: list[Any], *, strict: bool = False
                  ) -> tuple[list[tuple[int, str, dict]], list[tuple[int, list[Problem]]]]:
    """validate_payload for a batch: ([(index, patient_ref, features)], [(index, errors)]).

    One pydantic call for the whole list (much cheaper per row); rows it rejects are validated
    again one by one, so their errors are exactly those validate_payload gives."""
    plain = [i for i, p in enumerate(payloads)
             if type(p) is dict and all(type(k) is str for k in p)]
    bad_rows = set(range(len(payloads))) - set(plain)
    try:
        models = dict(zip(plain, spec.list_adapter.validate_python([payloads[i] for i in plain],
                                                                   strict=strict), strict=True))
    except ValidationError as exc:
        bad_rows |= {plain[e["loc"][0]] for e in exc.errors()}
        ok = [i for i in plain if i not in bad_rows]
        models = dict(zip(ok, spec.list_adapter.validate_python([payloads[i] for i in ok],
                                                                strict=strict), strict=True))
    good = []
    for i, model in models.items():
        values = dict(model.__dict__)  # flat model of plain values: same as model_dump()
        good.append((i, values.pop(PATIENT_REF), values))
    errors = []
    for i in sorted(bad_rows):
        try:
            validate_payload(spec, payloads[i], strict=strict)
        except InvalidInput as exc:
            errors.append((i, exc.errors))
    return good, errors


def _translate(spec: Spec, err: dict) -> Problem:
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
    elif kind == "int_type" and isinstance(value, float):
        message = "must be a whole number"
    elif kind in ("float_parsing", "float_type", "int_parsing", "int_type"):
        message = "must be a number"
    elif kind == "int_from_float":
        message = "must be a whole number"
    elif kind == "literal_error" and feature:
        message = "must be one of: " + ", ".join(feature.categories or [])
    elif kind == "bool_parsing":
        message = "must be yes or no"
    elif kind == "bool_type":
        message = "must be true or false"
    elif kind == "string_too_long":
        message = f"must be at most {spec.patient_reference.max_length} characters"
    elif kind == "string_pattern_mismatch":
        message = "may contain only letters, digits and - _ / . (no spaces or control characters)"
    elif kind == "string_too_short":
        message = "is required"
    elif kind == "string_type":
        message = "must be text"
    else:
        message = plain_message(err)
    return problem(field, message, value)


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:g}"
