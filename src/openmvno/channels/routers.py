"""Every router beyond health and auth, in mount order. Add new channels here.

A request is matched against the routes in this order, one by one: the API routers the
app, SMS and USSD read most come first (matching a balance read behind every portal
route cost a third of its time)."""

from __future__ import annotations

from fastapi import APIRouter

from openmvno.runtime import Runtime


def all_routers(rt: Runtime) -> list[APIRouter]:
    from openmvno.channels.api import balance, lines, orders, payments, plans, receipts, webhooks
    from openmvno.channels.portal import account_pages, auth_pages, dev_outbox

    routers: list[APIRouter] = [balance.router, lines.router, plans.router]
    routers += [orders.router, payments.router, receipts.router]
    from openmvno.channels.api import autorenew

    routers.append(autorenew.router)
    routers += [auth_pages.router, account_pages.router]
    from openmvno.channels.portal import checkout_pages, orders_pages, payment_pages, topup_pages

    routers += [checkout_pages.router, topup_pages.router, payment_pages.router]
    routers.append(orders_pages.router)
    from openmvno.channels.api import cards as cards_api
    from openmvno.channels.portal import cards_pages

    routers += [cards_api.router, cards_pages.router]
    from openmvno.channels.portal import autorenew_pages

    routers.append(autorenew_pages.router)
    from openmvno.channels.api import usage as usage_api
    from openmvno.channels.portal import usage_pages

    routers += [usage_api.router, usage_pages.router]
    from openmvno.channels.api import notices as notices_api
    from openmvno.channels.portal import preferences_pages

    routers += [notices_api.router, preferences_pages.router]
    if rt.settings.dev_outbox_enabled:
        routers.append(dev_outbox.router)
    if rt.settings.payment_provider == "sandbox":
        from openmvno.adapters.payments import sandbox_pages, sandbox_setup_pages

        routers.append(sandbox_pages.router)
        routers.append(sandbox_setup_pages.router)
    routers.append(webhooks.router)
    from openmvno.channels.sms import inbound as sms_inbound
    from openmvno.channels.ussd import callback as ussd_callback

    routers += [sms_inbound.router, ussd_callback.router]
    from openmvno.channels.console import admin_pages, agent_pages
    from openmvno.channels.console import auth_pages as console_auth

    routers += [console_auth.router, agent_pages.router, admin_pages.router]
    return routers
