"""The portal's browser harness (a real ``openmvno serve``, Debian's Chromium)."""

from tests.portal.conftest import (  # noqa: F401
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
