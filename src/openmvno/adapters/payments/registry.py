"""Choose the payment provider from settings (never at import time)."""

from __future__ import annotations

from openmvno.adapters.payments import PaymentProvider
from openmvno.config import Settings
from openmvno.runtime import Runtime


def payment_provider(settings: Settings, rt: Runtime) -> PaymentProvider:
    """The configured provider, built once per runtime.

    Tests may put their own in ``rt.extras["payment_provider"]``."""
    cached: PaymentProvider | None = rt.extras.get("payment_provider")
    if cached is not None:
        return cached
    provider: PaymentProvider
    if settings.payment_provider == "stripe":
        from openmvno.adapters.payments.stripe import StripeProvider

        provider = StripeProvider(settings)
    else:
        from openmvno.adapters.payments.sandbox import SandboxProvider

        provider = SandboxProvider(rt)
    rt.extras["payment_provider"] = provider
    return provider
