"""The portal's browser fixtures (a served process, Chromium) for the usage page tests."""

from tests.portal.conftest import *  # noqa: F403
