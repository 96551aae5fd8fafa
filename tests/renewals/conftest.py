"""The browser harness of tests/portal (Debian Chromium, a real ``openmvno serve``) for
the auto-renew browser test."""

from tests.portal.conftest import (  # noqa: F401 - fixtures
    base_url,
    browser,
    browser_context_args,
    browser_type,
    browser_type_launch_args,
    launch_browser,
    new_phone,
    playwright,
    portal_server,
)
