"""Wording shared by the order modules: what a top-up is called, and why a payment or a
paid order failed (``failure_code`` -> a sentence in the reader's language)."""

from __future__ import annotations

from openmvno.i18n import N_, translate

FAILURE_REASONS: dict[str, str] = {
    "insufficient_funds": N_("The payment was refused: not enough funds. Try another method."),
    "limit_exceeded": N_("The payment was refused: the card limit is reached. "
                         "Try another method."),
    "declined": N_("The payment was declined by the bank. Try another method."),
    "expired": N_("The payment was not completed in time. Try again."),
    "cancelled": N_("The payment was cancelled."),
    "authentication_failed": N_("The card's security check (3-D Secure) was not passed. "
                                "Try again or use another method."),
    "provider_unavailable": N_("The payment service did not answer; nothing was charged. "
                               "Try again or use another method."),
    "amount_mismatch": N_("The amount paid does not match the order; our staff will check it "
                          "and refund the payment."),
    "out_of_stock": N_("No new line was available after payment; the payment will be "
                       "refunded."),
    "line_unavailable": N_("The line can no longer take this order; the payment will be "
                           "refunded."),
    "number_owner_changed": N_("The number changed owner after it was checked, so nobody "
                               "was credited; the payment will be refunded."),
}
UNKNOWN_FAILURE = N_("The payment failed ({code}). Try another method.")
WALLET_TOPUP = N_("Wallet top-up")
GUEST_TOPUP = N_("Top-up for {msisdn}")


def failure_reason(language: str, code: str | None) -> str | None:
    """The localised sentence for a failure code (``None`` when there is no failure)."""
    if not code:
        return None
    message = FAILURE_REASONS.get(code)
    if message is None:
        return translate(language, UNKNOWN_FAILURE, code=code)
    return translate(language, message)
