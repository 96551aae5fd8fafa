"""Staff-side domain for the agent and admin consoles: staff sessions and TOTP, caller
verifications, account notes and the run-time settings every process reads."""
