"""All settings in one place (environment ``OPENMVNO_*`` or a ``.env`` file).

Adapters for the outside world are chosen here, never at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PaymentMethod = Literal["card", "alipay", "wechat_pay", "bank_transfer", "wallet"]
ALL_METHODS: tuple[PaymentMethod, ...] = ("card", "alipay", "wechat_pay", "bank_transfer", "wallet")


class Settings(BaseSettings):
    """Runtime configuration of one OpenMVNO deployment."""

    model_config = SettingsConfigDict(env_prefix="OPENMVNO_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "production"
    """``production`` unless said otherwise: a forgotten setting must fail safe."""
    data_dir: Path = Path("./openmvno-data")
    database_url: str = ""
    """SQLAlchemy async URL; empty means SQLite in ``data_dir``."""
    db_pool_size: int = 10
    secret_key: SecretStr = SecretStr("")
    """Signs CSRF tokens and hashes device secrets; generated into data_dir when empty."""
    public_url: str = "http://127.0.0.1:8000"
    operator_name: str = "OpenMVNO Demo Mobile"
    default_region: str = "CN"
    default_currency: str = "CNY"
    default_language: Literal["zh-CN", "en"] = "zh-CN"
    smdp_address: str = "smdp.openmvno.example"
    short_code: str = "10086"

    # security
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    argon2_parallelism: int = 4
    access_token_minutes: int = 15
    refresh_token_days: int = 30
    session_days: int = 14
    otp_ttl_minutes: int = 10
    otp_max_attempts: int = 5
    otp_resend_seconds: int = 60
    otp_daily_cap: int = 10
    login_max_failures: int = 5
    login_lock_minutes: int = 15
    bind_max_failures: int = 5
    bind_window_minutes: int = 15
    max_body_bytes: int = 64 * 1024
    secure_cookies: bool = False

    # adapters
    sms_adapter: Literal["outbox", "smpp", "http"] = "outbox"
    """``smpp`` and ``http`` are reserved for the SMS gateway adapters (not in this release)."""
    email_adapter: Literal["outbox", "smtp"] = "outbox"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_sender: str = "no-reply@openmvno.example"
    payment_provider: Literal["sandbox", "stripe"] = "sandbox"
    payment_methods: list[PaymentMethod] = Field(default_factory=lambda: list(ALL_METHODS))
    """Which payment methods are on (some operators take cards only)."""
    stripe_api_key: SecretStr = SecretStr("")
    stripe_webhook_secret: SecretStr = SecretStr("")
    stripe_api_base: str = ""
    sandbox_webhook_secret: SecretStr = SecretStr("sandbox-webhook-secret")
    guest_lookups_per_hour: int = 30
    """Number look-ups (masked owner name) one client address may make per hour."""
    topup_min_minor: int = 1000
    topup_max_minor: int = 100000

    # worker
    embedded_worker: bool = True
    """``openmvno serve`` runs the outbox worker in-process (handy on SQLite)."""
    worker_poll_seconds: float = 0.5
    worker_batch: int = 50

    log_json: bool = True

    # orders, payments, provisioning, receipts
    provisioning_adapter: Literal["sandbox"] = "sandbox"
    provisioning_sandbox_fail: bool = False
    """Make the sandbox provisioning adapter fail (tests, demos of a failed activation)."""
    payment_stale_minutes: int = 30
    """The janitor asks the provider about attempts older than this with no answer."""
    payment_hard_limit_hours: int = 24
    """An attempt still unanswered after this long is failed with code ``expired``."""
    addon_priority: int = 50
    """Add-on buckets are used before the plan's (lower is used first)."""
    receipt_font_path: str = ""
    """A CJK TrueType/OpenType font (or collection) for PDF receipts; empty: find Noto CJK."""

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'openmvno.db'}"
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def problems(self) -> list[str]:
        """Settings this release cannot run with (checked when a process starts)."""
        found = []
        if self.sms_adapter != "outbox":
            found.append(f"OPENMVNO_SMS_ADAPTER={self.sms_adapter} is not available yet")
        if self.payment_provider == "stripe" and not self.stripe_api_key.get_secret_value():
            found.append("OPENMVNO_PAYMENT_PROVIDER=stripe needs OPENMVNO_STRIPE_API_KEY")
        if self.payment_provider == "stripe" and not self.stripe_webhook_secret.get_secret_value():
            found.append("OPENMVNO_PAYMENT_PROVIDER=stripe needs OPENMVNO_STRIPE_WEBHOOK_SECRET")
        return found

    @property
    def dev_outbox_enabled(self) -> bool:
        """The dev outbox page exists only while a channel stays in the outbox."""
        return self.sms_adapter == "outbox" or self.email_adapter == "outbox"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings``)."""
    return Settings()
