"""All settings in one place (environment ``OPENMVNO_*`` or a ``.env`` file).

Adapters for the outside world are chosen here, never at import time.
"""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PaymentMethod = Literal["card", "alipay", "wechat_pay", "bank_transfer", "wallet"]
ALL_METHODS: tuple[PaymentMethod, ...] = ("card", "alipay", "wechat_pay", "bank_transfer", "wallet")
SANDBOX_TEST_WEBHOOK_SECRET = "sandbox-webhook-secret"  # noqa: S105 - public, development only
"""The sandbox's public test secret: filled in only in development."""
MIN_SECRET_LENGTH = 32
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class ConfigurationError(RuntimeError):
    """A setting this process cannot run with (the message names the variable)."""


def _is_local(host: str) -> bool:
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Runtime configuration of one OpenMVNO deployment."""

    model_config = SettingsConfigDict(env_prefix="OPENMVNO_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "production"
    """``production`` unless said otherwise: a forgotten setting must fail safe. Development
    conveniences (the dev outbox page, the sandbox's public test secret, a secret key
    generated into the data directory) exist only in ``development``."""
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
    auth_failures_per_address: int = 50
    """Wrong passwords and wrong codes one client address may make (across all accounts)
    within ``auth_failure_window_minutes``; then it waits."""
    auth_failure_window_minutes: int = 15
    code_requests_per_address: int = 30
    """Registrations and code requests (each may send an SMS or email) per client address
    per hour."""
    bind_max_failures: int = 5
    bind_window_minutes: int = 15
    max_body_bytes: int = 64 * 1024
    secure_cookies: bool = False
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses or networks (CIDR) of the reverse proxies in front of this server, comma
    separated. Only a request from one of them may name the client (``X-Forwarded-For``)
    and the scheme (``X-Forwarded-Proto``); otherwise the socket peer is the client."""
    dev_outbox: bool | None = None
    """The ``/dev/outbox`` page, which shows every SMS and email kept in the outbox (codes
    included). Unset: on in development while a channel stays in the outbox; never in
    production (``true`` there is refused)."""

    # adapters
    sms_adapter: Literal["outbox", "smpp", "http"] = "outbox"
    """``smpp``: SMS go to the operator's SMSC over SMPP 3.4, sent by ``openmvno smpp`` (see
    the ``smpp_*`` settings); ``outbox`` (development) keeps them in the outbox table;
    ``http`` is reserved."""
    email_adapter: Literal["outbox", "smtp"] = "outbox"
    smtp_host: str = ""
    """The SMTP server (``email_adapter=smtp``); development fills in ``127.0.0.1``,
    production refuses ``smtp`` without one."""
    smtp_port: int = 25
    smtp_sender: str = "no-reply@openmvno.example"
    """The From address of every email."""
    payment_provider: Literal["sandbox", "stripe"] = "sandbox"
    payment_methods: list[PaymentMethod] = Field(default_factory=lambda: list(ALL_METHODS))
    """Which payment methods are on (some operators take cards only)."""
    stripe_api_key: SecretStr = SecretStr("")
    stripe_webhook_secret: SecretStr = SecretStr("")
    stripe_api_base: str = ""
    # saved cards and auto top-up (CARDS)
    stripe_charge_concurrency: int = 8
    """Off-session Stripe charges in flight at once (``charge_saved``)."""
    auto_topup_max_per_month: int = 3
    """Default N: auto top-ups per account and calendar month (operator's time zone)."""
    auto_topup_retry_hours: int = 24
    """After a declined auto top-up, wait this long before charging the card again."""
    auto_topup_batch: int = 200
    """Auto top-ups claimed per worker round."""
    sandbox_webhook_secret: SecretStr = SecretStr("")
    """Signs the sandbox's webhooks; the public test secret is filled in only in development."""
    allow_sandbox_payments: bool = False
    """Production refuses the sandbox provider (it takes no real money) unless this is on."""
    guest_lookups_per_hour: int = 30
    """Number look-ups (masked owner name) one client address may make per hour."""
    topup_min_minor: int = 1000
    topup_max_minor: int = 100000

    # worker
    embedded_worker: bool = True
    """``openmvno serve`` runs the outbox worker in-process (handy on SQLite)."""
    worker_poll_seconds: float = 0.5
    worker_batch: int = 50

    # auto-renewal (RENEWALS): when renewals are attempted, how many lines a batch takes
    renewal_attempt_hours: list[float] = Field(default_factory=lambda: [24.0, 12.0, 1.0])
    """Hours before expiry at which a renewal is attempted (first attempt, then retries)."""
    renewal_grace_retry_first_hours: float = 6.0
    """In grace, the first retry this long after expiry; each later gap doubles ..."""
    renewal_grace_retry_max_hours: float = 24.0
    """... up to this many hours between two retries, until the line is suspended."""
    renewal_parked_check_hours: float = 24.0
    """A suspended line (or one whose funding cannot be tried) is looked at again this often
    in case it was renewed another way; a wallet that covers the price is taken at once."""
    renewal_batch: int = 500
    """Lines one worker claims per round (wallet and card renewals together)."""
    renewal_claim_seconds: int = 300
    """How long a claimed line stays with its worker (a killed worker's lines wait this long)."""
    renewal_pending_recheck_minutes: float = 10.0
    """A card charge the provider has not answered yet is asked again after this long."""

    log_json: bool = True

    # time zone (shared: NOTICES added it first; LIFECYCLE's formatting helpers use it too)
    timezone: str = "Asia/Shanghai"
    """The operator's IANA time zone: every date a person sees (portal, messages, receipts)
    and quiet hours are in it."""

    # notices (NOTICES): quiet hours, expiry reminders, SMTP login and STARTTLS
    quiet_hours_start: str = "22:00"
    """Local time (``timezone``, HH:MM) from which non-urgent notices wait ..."""
    quiet_hours_end: str = "08:00"
    """... until this local time (equal to the start: no quiet hours)."""
    expiry_reminder_days: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [7, 3, 1]
    )
    """Days before a line's expiry on which its reminder is sent (comma separated)."""
    smtp_user: str = ""
    """SMTP login (AUTH); empty: no login."""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    """Upgrade the SMTP connection with STARTTLS before login (the server's certificate is
    checked against the system's CAs, or ``smtp_ca_file``)."""
    smtp_ca_file: str = ""
    """A CA bundle for the SMTP server's certificate (a private CA); empty: the system's."""
    smtp_timeout_seconds: float = 10.0

    # line lifecycle (LIFECYCLE): expiry → grace → suspended (停机) → terminated, and the
    # released number's quarantine; see docs/lifecycle.md
    grace_days: int = Field(default=7, ge=0)
    """Days after its expiry a line with nothing renewed stays in ``grace`` (0: it is
    suspended as soon as it expires)."""
    grace_service: Literal["none", "minimal"] = "minimal"
    """What a line in grace may still do: ``minimal`` (incoming calls and SMS, emergency
    calls; nothing charged) or ``none`` (barred at once, like a suspended line)."""
    suspension_days: int = Field(default=30, ge=0)
    """Days a line stays ``suspended`` before it is ``terminated`` (its plan lapsed for
    good; a payment before then restores it at once)."""
    number_quarantine_days: int = Field(default=90, ge=0)
    """Days a terminated line's number is held back before it may be issued again."""
    lifecycle_batch: int = Field(default=500, ge=1)
    """Lines each lifecycle move takes per batch (one transaction, a fixed number of
    statements)."""

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
    cache_dir: Path | None = None
    """Files worked out once and kept across restarts (the receipts' working font, ~2 MB
    and ~10 s of CPU to make); empty: ``data_dir/cache``."""

    # usage charging (POST /api/v1/usage, rating, thresholds, barring; docs/RATING.md)
    usage_home_zone: str = "CN"
    """The zone code of the home network: every plan's allowances work there (a roaming
    add-on's only in its own zones). Records that name no zone are home usage."""
    usage_max_batch: int = 10_000
    """Records per ``POST /api/v1/usage`` at most."""
    usage_max_body_bytes: int = 4 * 1024 * 1024
    """The body size cap of ``POST /api/v1/usage`` (a full batch is about 1.5 MB)."""
    usage_future_skew_seconds: int = 300
    """A record starting later than this after now is ``out_of_order`` (a peer's clock)."""
    usage_wallet_low_minor: int = 1000
    """A ``wallet_low`` notice when overage takes the wallet below this (minor units)."""

    # SMS over SMPP (`openmvno smpp`), SMS commands and USSD (SMS; docs/sms-ussd.md)
    smpp_host: str = "127.0.0.1"
    """The operator's SMSC (``sms_adapter=smpp``): one transceiver bind per ``openmvno smpp``."""
    smpp_port: int = 2775
    smpp_system_id: str = ""
    """The ESME account the SMSC gave us (required with ``sms_adapter=smpp``)."""
    smpp_password: SecretStr = SecretStr("")
    smpp_system_type: str = ""
    smpp_source_addr: str = ""
    """The sender of every SMS we submit; empty: ``short_code``."""
    smpp_window: int = 10
    """Submits awaiting their response at once on one bind (the SMSC's window)."""
    smpp_max_per_second: float = 50.0
    """Submits per second per bind at most (the throughput the SMSC contract allows)."""
    smpp_enquire_link_seconds: float = 30.0
    """An ``enquire_link`` after this long without traffic; no answer drops the bind."""
    smpp_response_timeout_seconds: float = 10.0
    smpp_reconnect_min_seconds: float = 1.0
    """Reconnect backoff: the first wait after a lost or refused bind, doubling ..."""
    smpp_reconnect_max_seconds: float = 60.0
    """... up to this."""
    smpp_throttle_pause_seconds: float = 1.0
    """After a throttled submit (``ESME_RTHROTTLED``/queue full) the bind sends nothing
    for this long; the part is sent again (it was not accepted)."""
    smpp_in_doubt_seconds: float = 600.0
    """A submit whose response never came (the link dropped) may have been accepted: it is
    sent again only if no delivery receipt names it within this long."""
    sms_commands_per_hour: int = 30
    """Inbound SMS commands one sender may send per hour (then one polite refusal)."""
    sms_confirm_minutes: int = 5
    """How long a ``BUY`` waits for its ``YES``."""
    sms_inbound_secret: SecretStr = SecretStr("")
    """Shared secret of HTTP SMS gateways posting MO messages to ``/sms/inbound``
    (HMAC-SHA256 of ``"{timestamp}.{body}"``); empty: the route refuses everything."""
    sms_inbound_window_seconds: int = 300
    """A signed inbound message older (or newer) than this is refused (replay window)."""
    ussd_allowed_addresses: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses or networks (CIDR) of the USSD aggregator, comma separated ..."""
    ussd_secret: SecretStr = SecretStr("")
    """... or a shared secret it sends as ``X-USSD-Secret`` (either lets a callback in)."""

    # agent and admin consoles (CONSOLE; docs/console.md)
    console_session_hours: int = 10
    """A console (staff) session ends this long after its login, whatever happens ..."""
    console_idle_minutes: int = 30
    """... and after this long without a request."""
    console_verify_minutes: int = 15
    """A verified caller stays verified for this long, then the agent asks again."""
    console_refund_approval_minor: int = 10000
    """A refund above this (minor units) needs an admin: an agent cannot do it alone."""
    console_bank_transfer_agents: bool = False
    """Agents may record a bank transfer (admins always may)."""
    runtime_settings_cache_seconds: float = 5.0
    """How stale a process's copy of the run-time settings (payment methods on/off) may be."""

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'openmvno.db'}"
        if self.environment == "development" and not self.sandbox_webhook_secret.get_secret_value():
            self.sandbox_webhook_secret = SecretStr(SANDBOX_TEST_WEBHOOK_SECRET)
        if self.environment == "development" and not self.smtp_host:
            self.smtp_host = "127.0.0.1"
        return self

    @field_validator("trusted_proxies", "ussd_allowed_addresses", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("expiry_reminder_days", mode="before")
    @classmethod
    def _split_days(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [int(item) for item in value.split(",") if item.strip()]
        return value

    @property
    def font_cache_dir(self) -> str:
        """Where the receipts' working fonts are kept (see :attr:`cache_dir`)."""
        return str((self.cache_dir or self.data_dir / "cache") / "fonts")

    @property
    def is_production(self) -> bool:
        return self.environment != "development"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def problems(self) -> list[str]:
        """Settings this release cannot run with (checked when a process starts)."""
        found = []
        if self.sms_adapter == "http":
            found.append("OPENMVNO_SMS_ADAPTER=http is not available yet: use smpp")
        if self.sms_adapter == "smpp" and not self.smpp_system_id:
            found.append("OPENMVNO_SMS_ADAPTER=smpp needs OPENMVNO_SMPP_SYSTEM_ID (and _PASSWORD)")
        for network in self.ussd_allowed_addresses:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                found.append(
                    f"OPENMVNO_USSD_ALLOWED_ADDRESSES: {network!r} is not an IP address or "
                    "network; list addresses or CIDR networks, comma separated"
                )
        if self.payment_provider == "stripe" and not self.stripe_api_key.get_secret_value():
            found.append("OPENMVNO_PAYMENT_PROVIDER=stripe needs OPENMVNO_STRIPE_API_KEY")
        if self.payment_provider == "stripe" and not self.stripe_webhook_secret.get_secret_value():
            found.append("OPENMVNO_PAYMENT_PROVIDER=stripe needs OPENMVNO_STRIPE_WEBHOOK_SECRET")
        if self.email_adapter == "smtp" and not self.smtp_host:
            found.append("OPENMVNO_EMAIL_ADAPTER=smtp needs OPENMVNO_SMTP_HOST (the SMTP server)")
        # operator time zone (LIFECYCLE): an unknown name stops the process with one line
        from openmvno.formatting import parse_clock, timezone_problem

        zone_problem = timezone_problem(self.timezone)
        if zone_problem:
            found.append(f"OPENMVNO_TIMEZONE: {zone_problem}")
        for name in ("quiet_hours_start", "quiet_hours_end"):
            try:
                parse_clock(str(getattr(self, name, "00:00")))
            except ValueError as exc:
                found.append(f"OPENMVNO_{name.upper()}: {exc} (24-hour clock, e.g. 22:00)")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                found.append(
                    f"OPENMVNO_TRUSTED_PROXIES: {proxy!r} is not an IP address or network; "
                    "list addresses or CIDR networks, comma separated"
                )
        return found

    def deploy_problems(self) -> list[str]:
        """What ``serve`` and ``worker`` refuse in production, one line each naming the
        variable and what to set (empty in development)."""
        if not self.is_production:
            return []
        found = []
        if self.dev_outbox:
            found.append(
                "OPENMVNO_DEV_OUTBOX=true is refused in production: the page shows every code "
                "sent; unset it (SMS and email stay in the outbox table, shown on no page)"
            )
        key = self.secret_key.get_secret_value()
        if not key:
            found.append(
                "OPENMVNO_SECRET_KEY is not set: set the same random string of at least "
                f"{MIN_SECRET_LENGTH} characters for every process (production never generates one)"
            )
        elif len(key) < MIN_SECRET_LENGTH:
            found.append(
                f"OPENMVNO_SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters: "
                f"set a random string of at least {MIN_SECRET_LENGTH}"
            )
        if self.sms_adapter == "outbox":
            found.append(
                "OPENMVNO_SMS_ADAPTER=outbox is refused in production: SMS would stay in the "
                "outbox table and reach no phone; set OPENMVNO_SMS_ADAPTER=smpp and run "
                "`openmvno smpp`"
            )
        if self.payment_provider == "sandbox":
            webhook_secret = self.sandbox_webhook_secret.get_secret_value()
            if not self.allow_sandbox_payments:
                found.append(
                    "OPENMVNO_PAYMENT_PROVIDER=sandbox takes no real money: set "
                    "OPENMVNO_PAYMENT_PROVIDER=stripe, or OPENMVNO_ALLOW_SANDBOX_PAYMENTS=true "
                    "for a test deployment"
                )
            elif webhook_secret in ("", SANDBOX_TEST_WEBHOOK_SECRET):
                found.append(
                    "OPENMVNO_SANDBOX_WEBHOOK_SECRET is unset or the public test secret: set a "
                    f"random string of at least {MIN_SECRET_LENGTH} characters"
                )
            elif len(webhook_secret) < MIN_SECRET_LENGTH:
                found.append(
                    f"OPENMVNO_SANDBOX_WEBHOOK_SECRET is shorter than {MIN_SECRET_LENGTH} "
                    f"characters: set a random string of at least {MIN_SECRET_LENGTH}"
                )
        url = urlsplit(self.public_url)
        if "public_url" not in self.model_fields_set:
            found.append(
                "OPENMVNO_PUBLIC_URL is not set: set the https:// address people use "
                "(links, payment returns and webhooks point there)"
            )
        elif url.scheme == "https" and not self.secure_cookies:
            found.append(
                "OPENMVNO_SECURE_COOKIES=false with an https:// OPENMVNO_PUBLIC_URL: "
                "set OPENMVNO_SECURE_COOKIES=true"
            )
        elif url.scheme != "https" and not _is_local(url.hostname or ""):
            found.append(
                f"OPENMVNO_PUBLIC_URL={self.public_url} is not https: set the https:// address "
                "(terminate TLS at your proxy) and OPENMVNO_SECURE_COOKIES=true"
            )
        return found

    def deploy_warnings(self) -> list[str]:
        """Production settings that run but that an operator should know about."""
        if not self.is_production:
            return []
        found = []
        if self.email_adapter == "outbox":
            found.append(
                "OPENMVNO_EMAIL_ADAPTER=outbox: email stays in the outbox table and reaches no "
                "inbox; set OPENMVNO_EMAIL_ADAPTER=smtp"
            )
        return found

    @property
    def dev_outbox_enabled(self) -> bool:
        """The dev outbox page exists only in development while a channel stays in the
        outbox (and ``dev_outbox`` is not turned off); never in production."""
        if self.is_production or self.dev_outbox is False:
            return False
        return self.sms_adapter == "outbox" or self.email_adapter == "outbox"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings``)."""
    return Settings()
