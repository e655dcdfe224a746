"""The spec: data that defines the prediction task and every model input, and the input model
built from it.

The spec file (specs/*.json) is the single source of truth for the form, validation,
out-of-distribution limits, the outcome definition, subgroups and the model card. Training (or
import) copies it into each artefact and adds the validated ranges the data really covered.
Every field is documented in RUNBOOK.md, "Spec reference" (a test checks it).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import SpecError
from core.inputs import (  # noqa: F401 (validation lives in core.inputs; callers import it here)
    PATIENT_REF,
    WHOLE_PAYLOAD,
    WHOLE_ROW,
    _build_input_model,
    validate_many,
    validate_payload,
)
from core.task import (
    Estimator,
    ExtractionExclusion,
    IndexEvent,
    Outcome,
    Strict,
    Subgroup,
    Workload,
)

SPEC_VERSION = 2


class Feature(Strict):
    """One model input: how to ask for it, what is physically possible, what was validated."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="lower case: the extract's "
                      "column, the form's field and the input's key")
    label: str = Field(description="what the clinician reads on the form")
    unit: str = Field(default="", description="the unit, shown beside the label")
    type: Literal["number", "integer", "boolean", "category"] = Field(
        description="'number', 'integer', 'boolean' (yes/no) or 'category'")
    required: bool = Field(description="whether a value must be given; booleans always are")
    help: str = Field(default="", description="help text under the field")
    hard_min: float | None = Field(default=None, description="numbers: the lowest physically "
                                   "plausible value; lower is rejected")
    hard_max: float | None = Field(default=None, description="numbers: the highest physically "
                                   "plausible value; higher is rejected")
    categories: list[str] | None = Field(default=None, description="categories: the allowed "
                                         "values, in the order the form lists them")
    # Added by training to the artefact's copy:
    validated_min: float | None = Field(default=None, description="written by training: the "
                                        "lower end of the validated range")
    validated_max: float | None = Field(default=None, description="written by training: the "
                                        "upper end of the validated range")
    validated_categories: list[str] | None = Field(
        default=None, description="written by training: categories seen often enough to be "
        "validated")

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


class PatientReference(Strict):
    """How the form asks for the patient reference."""

    label: str = Field(description="the field's label, e.g. 'Patient reference (study ID or MRN)'")
    help: str = Field(default="", description="help text under it")
    max_length: int = Field(default=64, ge=4, le=256, description="longest reference accepted")


class RoutingPolicy(Strict):
    """Targets the routing rule is fitted to at training (or import) time."""

    low_risk_event_rate_target: float = Field(
        gt=0, lt=1, description="the highest acceptable event rate among auto-finalised "
        "low-risk predictions (upper 95% bound on the calibration split)")
    confidence_level: float = Field(default=0.975, gt=0.5, lt=1, description="how sure the "
                                    "model must be to auto-finalise a prediction")
    novelty_quantile: float = Field(default=0.995, gt=0.5, lt=1, description="share of training "
                                    "patients whose combination of values counts as usual")
    validated_range_quantiles: tuple[float, float] = Field(
        default=(0.005, 0.995), description="percentiles of the cohort that bound the validated "
        "range of each numeric input")
    workload: Workload | None = Field(default=None, description="optional: the setting and "
                                      "patients a week, for the review workload sentence")


class Spec(Strict):
    """A whole spec file: the prediction task and every model input."""

    spec_version: Literal[2] = Field(description="the spec format; 2")
    title: str = Field(min_length=1, max_length=60, description="a short name for the app's "
                       "title and browser tab, e.g. 'One-year mortality risk'")
    model_name: str = Field(description="the model's full name, heading the model card")
    description: str = Field(description="what the model estimates, in one or two sentences")
    synthetic: bool = Field(description="true only for a model trained on synthetic data")
    intended_use: str = Field(description="who is scored, when, and for which decision")
    intended_users: str = Field(description="who uses the results")
    out_of_scope: list[str] = Field(min_length=1, description="patients and uses the model is "
                                    "not for, one per item")
    known_limitations: list[str] = Field(min_length=1, description="what users must know about "
                                         "the model's limits, one per item (the model card adds "
                                         "those of the estimator and routing)")
    cleaning: str = Field(description="the cleaning recipe for the extract: 'clean' for the "
                          "documented generic format")
    index: IndexEvent = Field(description="the index event (description, date_column)")
    outcome: Outcome = Field(description="what is predicted and how an outcome is recorded")
    extraction_exclusions: list[ExtractionExclusion] = Field(
        default=[], description="patients excluded when the extract was made (name, description, "
        "excluded): rows of the cohort flow before the extract")
    subgroups: list[Subgroup] = Field(default=[], description="features to report the held-out "
                                      "metrics by (feature, and bands for a numeric one)")
    estimator: Estimator = Field(default=Estimator(), description="what training fits (family, "
                                 "calibration)")
    patient_reference: PatientReference = Field(description="how the form asks for the patient "
                                                "reference (label, help, max_length)")
    action_threshold: float = Field(gt=0, lt=1, description="the calibrated risk at or above "
                                    "which the clinician acts differently")
    action: str = Field(description="what the clinician does above and below the threshold")
    routing: RoutingPolicy = Field(description="targets of the routing rule")
    features: list[Feature] = Field(min_length=1, description="the model's inputs, in form order")

    @field_validator("cleaning")
    @classmethod
    def _known_recipe(cls, value: str) -> str:
        from core.cleaning import recipe_names  # the recipes import this module

        if value not in recipe_names():
            raise ValueError("must be one of: " + ", ".join(recipe_names()))
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Spec:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {', '.join(dupes)}")
        if PATIENT_REF in names:
            raise ValueError(f"'{PATIENT_REF}' is reserved for the patient reference")
        if self.outcome.name in names:
            raise ValueError(f"outcome.name '{self.outcome.name}' is also a feature's name")
        for i, group in enumerate(self.subgroups):
            _check_subgroup(i, group, {f.name: f for f in self.features})
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

    def horizon_text(self) -> str:
        """'within 30 days of <the index event>', with the spec's horizon."""
        return f"within {self.outcome.horizon_days} days of {self.index.description}"


def _check_subgroup(i: int, group: Subgroup, features: dict[str, Feature]) -> None:
    f = features.get(group.feature)
    where = f"subgroups.{i}"
    if f is None:
        raise ValueError(f"{where}: '{group.feature}' is not a feature")
    if f.numeric:
        cuts = group.bands or []
        if not cuts:
            raise ValueError(f"{where}: numeric feature '{f.name}' needs bands (cut points)")
        if any(b >= a for a, b in zip(cuts[1:], cuts, strict=False)) or not (
                f.hard_min < cuts[0] and cuts[-1] <= f.hard_max):
            raise ValueError(f"{where}: bands must increase and lie inside the hard limits "
                             f"{_fmt(f.hard_min)}-{_fmt(f.hard_max)}")
    elif group.bands is not None:
        raise ValueError(f"{where}: only numeric features have bands")


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


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:g}"
