"""The console's browser tests use the portal's real-server harness (one ``openmvno serve
--demo`` per session, headless Debian Chromium)."""

from tests.portal.conftest import (  # noqa: F401 - fixtures
    base_url,
    browser,
    browser_context_args,
    browser_type,
    browser_type_launch_args,
    datacard,
    launch_browser,
    new_phone,
    playwright,
    portal_server,
)
