"""Every router beyond health and auth, in mount order. Add new channels here."""

from __future__ import annotations

from fastapi import APIRouter

from openmvno.runtime import Runtime


def all_routers(rt: Runtime) -> list[APIRouter]:
    from openmvno.channels.portal import account_pages, auth_pages, dev_outbox

    routers: list[APIRouter] = []
    routers += [auth_pages.router, account_pages.router]
    from openmvno.channels.portal import checkout_pages, orders_pages, payment_pages, topup_pages

    routers += [checkout_pages.router, topup_pages.router, payment_pages.router]
    routers.append(orders_pages.router)
    if rt.settings.dev_outbox_enabled:
        routers.append(dev_outbox.router)
    from openmvno.channels.api import lines, plans

    routers += [plans.router, lines.router]
    from openmvno.channels.api import balance

    routers.append(balance.router)
    if rt.settings.payment_provider == "sandbox":
        from openmvno.adapters.payments import sandbox_pages

        routers.append(sandbox_pages.router)
    from openmvno.channels.api import orders, payments, receipts, webhooks

    routers += [orders.router, payments.router, receipts.router, webhooks.router]
    return routers
