"""channels sms domain."""
