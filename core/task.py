"""The prediction task a spec describes beyond its inputs: the outcome and how it is recorded,
the index event, the cohort's own exclusions made at extraction, the subgroups to report, the
estimator to train and the review workload. Every page, the CLI, the model card and the
outcome forms take their words from here, never from the shipped demonstration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = r"^[a-z][a-z0-9_]*$"  # a column or field name: lower case, digits, underscores


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measurement(Strict):
    """A measured value that defines the event, recorded with the outcome when it is known."""

    name: str = Field(pattern=NAME, description="column of the outcome import file (and field of "
                      "the outcome form) that holds the value")
    label: str = Field(min_length=1, description="what the value is, in plain words, e.g. "
                       "'Highest creatinine within the horizon'")
    unit: str = Field(default="", description="its unit, e.g. 'mg/dL'")
    min: float = Field(description="lowest plausible value; lower values are refused")
    max: float = Field(description="highest plausible value; higher values are refused")
    event_threshold: float = Field(description="the value that defines the event")
    event_when: Literal["at_or_above", "at_or_below"] = Field(
        default="at_or_above", description="whether the event is a value at or above the "
        "threshold, or at or below it")

    @model_validator(mode="after")
    def _threshold_inside_limits(self) -> Measurement:
        if not self.min < self.max:
            raise ValueError("measurement: min must be below max")
        if not self.min <= self.event_threshold <= self.max:
            raise ValueError("measurement: event_threshold must lie between min and max")
        return self

    def is_event(self, value: float) -> bool:
        """Whether a measured value means the event happened."""
        if self.event_when == "at_or_above":
            return value >= self.event_threshold
        return value <= self.event_threshold

    def describe_event(self) -> str:
        """The event's rule in words, e.g. 'at or above 5.5 mmol/L'."""
        side = "at or above" if self.event_when == "at_or_above" else "at or below"
        return f"{side} {self.event_threshold:g} {self.unit}".strip()


class Outcome(Strict):
    """What the model predicts and how an outcome is recorded once the horizon has passed."""

    name: str = Field(pattern=NAME, description="the outcome column of the training extract "
                      "(1 = event, 0 = no event)")
    label: str = Field(min_length=1, description="the outcome in a few plain words, as the risk "
                       "is headed, e.g. 'Death within one year'")
    event: str = Field(min_length=1, description="the event alone, in lower case, as sentences "
                       "use it, e.g. 'death' ('the death rate among ...')")
    definition: str = Field(min_length=1, description="the exact definition, one or two "
                            "sentences, shown as help and in the model card")
    horizon_days: int = Field(gt=0, description="days after the index event within which the "
                              "event counts")
    event_date: Literal["required", "optional", "none"] = Field(
        default="required", description="whether an event is recorded with its date: "
        "'required', 'optional', or 'none' (no date field)")
    measurement: Measurement | None = Field(
        default=None, description="optional: a measured value that defines the event (name, "
        "label, unit, min, max, event_threshold, event_when)")


class IndexEvent(Strict):
    """The moment a prediction is made for: the horizon counts from it."""

    description: str = Field(min_length=1, description="the index event in a few words, as in "
                             "'within 30 days of <description>'")
    date_column: str | None = Field(default=None, pattern=NAME, description="optional: the "
                                    "extract's column with the index date (YYYY-MM-DD); "
                                    "reported as the training data's date range")


class ExtractionExclusion(Strict):
    """Patients the team left out when it made the extract: a row of the cohort flow."""

    name: str = Field(pattern=NAME, description="a short name for the criterion")
    description: str = Field(min_length=1, description="the criterion in words")
    excluded: int = Field(ge=0, description="how many patients it excluded")


class Subgroup(Strict):
    """A feature to report the held-out metrics by."""

    feature: str = Field(description="a feature's name: a category or yes/no feature, or a "
                         "numeric one with bands")
    bands: list[float] | None = Field(default=None, description="for a numeric feature: the cut "
                                      "points between bands, increasing, e.g. [65, 75, 85]")


class Estimator(Strict):
    """What `python -m core train` fits (an imported model is never retrained)."""

    family: Literal["logistic_regression", "hist_gradient_boosting", "random_forest"] = Field(
        default="logistic_regression", description="'logistic_regression' (default), "
        "'hist_gradient_boosting' or 'random_forest'")
    calibration: Literal["sigmoid", "isotonic"] = Field(
        default="sigmoid", description="how the risk is calibrated on the calibration split: "
        "'sigmoid' (default; small cohorts) or 'isotonic' (thousands of patients)")


class Workload(Strict):
    """The setting a team pictures for the review workload sentence."""

    setting: str = Field(min_length=1, description="who scores patients, e.g. 'A cardiology "
                         "clinic'")
    patients_per_week: int = Field(gt=0, description="how many patients that setting scores a "
                                   "week")
