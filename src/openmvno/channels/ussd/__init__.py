"""channels ussd domain."""
