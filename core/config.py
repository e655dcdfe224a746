"""Settings and paths: one place, read when called, never at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

PROJ_ROOT = Path(__file__).resolve().parent.parent
DEMO_PATIENT_KEY = b"demo-only-key-synthetic-data-not-for-clinical-use"


class Settings(BaseSettings):
    """Configuration from the environment (prefix APP_), or a .env file beside the repo."""

    model_config = SettingsConfigDict(env_prefix="APP_", env_file=".env", extra="ignore")

    db: Path = Field(default=PROJ_ROOT / "data" / "app.duckdb", description="DuckDB store file")
    models: Path = Field(default=PROJ_ROOT / "model_artifacts", description="artefact folder")
    batch_chunk_rows: int = Field(default=5000, ge=1, description="rows per batch transaction")
    demo: bool = Field(default=False, description="demo mode: synthetic model, demo accounts")
    patient_key: SecretStr | None = Field(
        default=None, description="secret for keyed hashes of patient references (required "
        "outside demo mode; at least 32 characters)")

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        key = self.patient_key.get_secret_value() if self.patient_key else ""
        if key and (len(key) < 32 or "change-me" in key) and not self.demo:
            raise ValueError("APP_PATIENT_KEY must be at least 32 characters and not a placeholder")
        return self

    def patient_key_bytes(self) -> bytes:
        """The key for patient-reference hashes; a fixed, public key only in demo mode."""
        if self.patient_key:
            return self.patient_key.get_secret_value().encode()
        if self.demo:
            return DEMO_PATIENT_KEY
        raise ConfigError("APP_PATIENT_KEY is not set; it is required outside demo mode "
                          "(see .env.example)")


def get_settings() -> Settings:
    """Fresh settings from the current environment (tests change it between calls)."""
    return Settings()


def default_spec_path() -> Path:
    return PROJ_ROOT / "specs" / "hyperkalaemia.json"


def default_extract_path() -> Path:
    return PROJ_ROOT / "data" / "cohort_extract.csv.gz"
