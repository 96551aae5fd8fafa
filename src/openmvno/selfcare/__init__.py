"""Self-care over SMS and USSD: the short-code commands and menus share these services
(the subscriber behind a phone number, the balance text, plans, buying from the wallet,
pending ``BUY`` confirmations, auto-renew and marketing opt-out)."""
