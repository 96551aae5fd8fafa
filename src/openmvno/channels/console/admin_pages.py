"""Admin console: dashboard, plans (create, edit with price history, retire), payment
methods on/off at run time, reminder texts (previewed), staff accounts and roles, peer
API keys, refund approvals, the audit log with filters, CSV exports."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select

from openmvno import clock, formatting
from openmvno.accounts import service as accounts
from openmvno.accounts.models import Account, Role
from openmvno.audit import service as audit
from openmvno.audit.models import AuditEvent
from openmvno.catalog import service as catalog
from openmvno.catalog.schemas import PlanIn, PlanPatch
from openmvno.channels.console import charts
from openmvno.channels.console.web import (
    PATH,
    AdminDesk,
    Desk,
    act,
    describe,
    done,
    error_page,
    parse_uuid,
    read_form,
    render,
    staff_of,
)
from openmvno.channels.console.web import refused as _refused
from openmvno.channels.console.web import savepoint as _savepoint
from openmvno.errors import DomainError, InvalidInput
from openmvno.i18n import LANGUAGES, translate
from openmvno.notifications import templates as notice_templates
from openmvno.notifications.notices import EVENTS
from openmvno.orders import refunds as order_refunds
from openmvno.orders.models import Order, OrderState
from openmvno.payments.models import PaymentMethodKind
from openmvno.receipts.service import method_name
from openmvno.staff import actions, dashboard, runtime_settings, schedule
from openmvno.staff import sessions as staff_sessions
from openmvno.usage import peers
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)
ADMIN = PATH + "/admin"


def _yuan(text: str) -> int:
    try:
        value = round(float(text.replace(",", ".").replace("¥", "").strip()) * 100)
    except ValueError as exc:
        raise InvalidInput(
            "amount_invalid", "Type an amount in yuan, such as 50 or 49.90."
        ) from exc
    if value < 0:
        raise InvalidInput("amount_invalid", "Type an amount in yuan, such as 50 or 49.90.")
    return value


def _zones(text: str) -> list[str]:
    """Roaming zones as typed: ``CN, HK mo`` → ``["CN", "HK", "MO"]``."""
    return [z.strip().upper() for z in text.replace("，", ",").replace(" ", ",").split(",")
            if z.strip()]


def _invalid(exc: ValidationError) -> InvalidInput:
    errors = exc.errors()
    if not errors:
        return InvalidInput("plan_invalid", "The plan does not add up: {reason}.", reason="-")
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "form"
    return InvalidInput(
        "plan_invalid", "The plan does not add up: {reason}.", reason=f"{where}: {first['msg']}"
    )


# ---------------------------------------------------------------- dashboard


@router.get(ADMIN)
async def dashboard_page(request: Request, desk: AdminDesk, session: Session, rt: RT) -> Response:
    lang = request.state.language
    board = await dashboard.build(session, rt.settings.timezone)
    labels = [d.strftime("%m-%d") for d in board.days]
    empty = translate(lang, "No data yet")
    money = {method_name(m, lang): [v / 100 for v in vs] for m, vs in board.revenue.items()}
    figures = [
        (
            translate(lang, "Revenue per day by method (yuan)"),
            charts.bars(
                labels,
                money,
                title=translate(lang, "Revenue per day by method (yuan)"),
                empty=empty,
            ),
        ),
        (
            translate(lang, "Renewals per day"),
            charts.bars(
                labels,
                {translate(lang, "Renewals"): board.renewals},
                title=translate(lang, "Renewals per day"),
                empty=empty,
            ),
        ),
        (
            translate(lang, "Failed payments by reason"),
            charts.hbars(
                board.failed, title=translate(lang, "Failed payments by reason"), empty=empty
            ),
        ),
        (
            translate(lang, "Lines by state"),
            charts.hbars(
                board.lines_by_state, title=translate(lang, "Lines by state"), empty=empty
            ),
        ),
        (
            translate(lang, "Automatic renewals"),
            charts.hbars(
                {
                    translate(lang, "Succeeded"): board.auto_renew.get("succeeded", 0),
                    translate(lang, "Failed"): board.auto_renew.get("failed", 0),
                },
                title=translate(lang, "Automatic renewals"),
                empty=empty,
            ),
        ),
        (
            translate(lang, "Usage per day"),
            charts.bars(labels, board.usage, title=translate(lang, "Usage per day"), empty=empty),
        ),
        (
            translate(lang, "Outbox health"),
            charts.hbars(board.outbox, title=translate(lang, "Outbox health"), empty=empty),
        ),
    ]
    today = clock.now().astimezone(formatting.zone(rt.settings.timezone)).date()
    return render(
        request,
        desk,
        "dashboard.html",
        {
            "figures": figures,
            "rate": board.auto_renew_rate,
            "export_from": (today - timedelta(days=30)).isoformat(),
            "export_to": today.isoformat(),
        },
    )


def _day(raw: str | None, default: date) -> date:
    try:
        return date.fromisoformat(raw) if raw else default
    except ValueError:
        return default


@router.get(ADMIN + "/export/{what}.csv")
async def export(
    request: Request, what: str, desk: AdminDesk, session: Session, rt: RT
) -> Response:
    today = clock.now().astimezone(formatting.zone(rt.settings.timezone)).date()
    start = _day(request.query_params.get("from"), today - timedelta(days=30))
    end = _day(request.query_params.get("to"), today)
    if what == "orders":
        body = await dashboard.orders_csv(session, start, end, rt.settings.timezone)
    elif what == "payments":
        body = await dashboard.payments_csv(session, start, end, rt.settings.timezone)
    else:
        return error_page(
            request,
            desk,
            404,
            "Not found",
            translate(request.state.language, "There is no such export."),
        )
    return Response(
        "\ufeff" + body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{what}-{start}-{end}.csv"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# ---------------------------------------------------------------- plans


@router.get(ADMIN + "/plans")
async def plans_page(request: Request, desk: AdminDesk, session: Session) -> Response:
    plans = await catalog.list_plans(session, include_retired=True)
    history = (
        await session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.subject_type == "plan",
                AuditEvent.action.in_(["plan.update", "plan.create", "plan.retire"]),
            )
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(100)
        )
    ).all()
    return render(request, desk, "plans.html", {"plans": plans, "history": history})


@router.post(ADMIN + "/plans")
async def plan_create(request: Request, desk: AdminDesk, session: Session, rt: RT) -> Response:
    form = await read_form(request, desk)
    try:
        data: dict[str, Any] = {
            "code": form.get("code", ""),
            "kind": form.get("kind", "bundle"),
            "name_zh": form.get("name_zh", ""),
            "name_en": form.get("name_en", ""),
            "price_minor": _yuan(form.get("amount", "")),
            "validity_days": int(form.get("validity_days") or 30),
            "data_bytes": round(float(form.get("data_gb") or 0) * 1024**3),
            "terms_zh": form.get("terms_zh", ""),
            "terms_en": form.get("terms_en", ""),
            "roaming_zones": _zones(form.get("zones", "")),
        }
        try:
            plan_in = PlanIn.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        await _savepoint(
            session,
            catalog.create_plan(
                session,
                plan_in,
                actor=staff_of(desk).account,
                default_currency=rt.settings.default_currency,
            ),
        )
    except ValueError:
        return _refused(
            request,
            desk,
            InvalidInput(
                "plan_invalid",
                "The plan does not add up: {reason}.",
                reason="validity_days / data_gb",
            ),
        )
    except DomainError as exc:
        return _refused(request, desk, exc)
    return done(ADMIN + "/plans", "saved")


@router.post(ADMIN + "/plans/{code}")
async def plan_edit(request: Request, code: str, desk: AdminDesk, session: Session) -> Response:
    """Price and names; the old price stays in the history (the audit log), and lines keep
    what they bought (an order keeps its amount)."""
    form = await read_form(request, desk)
    try:
        changes: dict[str, Any] = {"reason": form.get("reason", "")}
        if form.get("amount"):
            changes["price_minor"] = _yuan(form["amount"])
        for name in ("name_zh", "name_en"):
            if form.get(name):
                changes[name] = form[name]
        if form.get("zones"):
            changes["roaming_zones"] = _zones(form["zones"])
        try:
            patch = PlanPatch.model_validate(changes)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        await _savepoint(
            session, catalog.update_plan(session, code, patch, actor=staff_of(desk).account)
        )
    except DomainError as exc:
        return _refused(request, desk, exc)
    return done(ADMIN + "/plans", "saved")


@router.post(ADMIN + "/plans/{code}/retire")
async def plan_retire(request: Request, code: str, desk: AdminDesk, session: Session) -> Response:
    form = await read_form(request, desk)
    try:
        await _savepoint(
            session,
            catalog.retire_plan(
                session, code, actor=staff_of(desk).account, reason=form.get("reason", "")
            ),
        )
    except DomainError as exc:
        return _refused(request, desk, exc)
    return done(ADMIN + "/plans", "saved")


# ---------------------------------------------------------------- payment methods


@router.get(ADMIN + "/payment-methods")
async def methods_page(request: Request, desk: AdminDesk, session: Session, rt: RT) -> Response:
    await runtime_settings.refresh(session, rt, force=True)
    off = runtime_settings.methods_off(rt)
    lang = request.state.language
    rows = [
        {
            "code": m.value,
            "name": method_name(m.value, lang),
            "configured": m.value in rt.settings.payment_methods,
            "on": m.value not in off,
        }
        for m in PaymentMethodKind
        if m.value != "free"
    ]
    return render(request, desk, "methods.html", {"methods": rows})


@router.post(ADMIN + "/payment-methods")
async def methods_save(request: Request, desk: AdminDesk, session: Session, rt: RT) -> Response:
    form = await read_form(request, desk)
    method, state = form.get("method", ""), form.get("state", "")
    if method not in {m.value for m in PaymentMethodKind} or state not in ("on", "off"):
        return _refused(
            request, desk, InvalidInput("method_unknown", "There is no such payment method.")
        )
    await runtime_settings.refresh(session, rt, force=True)
    off = runtime_settings.methods_off(rt)
    before = sorted(off)
    (off.add if state == "off" else off.discard)(method)
    await runtime_settings.set_value(
        session, rt, runtime_settings.METHODS_OFF, sorted(off), actor_id=staff_of(desk).account.id
    )
    await audit.record(
        session,
        actor=staff_of(desk).account,
        action="payment_method.set",
        subject_type="payment_method",
        subject_id=method,
        reason=form.get("reason", ""),
        data={"before": {"off": before}, "after": {"off": sorted(off)}},
    )
    return done(ADMIN + "/payment-methods", "saved")


# ---------------------------------------------------------------- reminders (notice texts)


@router.get(ADMIN + "/notices")
async def notices_page(request: Request, desk: AdminDesk, session: Session, rt: RT) -> Response:
    wanted = request.query_params.get("event", "expiry_reminder")
    event = EVENTS.get(wanted) or EVENTS["expiry_reminder"]
    return await _notices(request, desk, session, rt, event.name)


async def _notices(
    request: Request,
    desk: Desk,
    session: Session,
    rt: RT,
    event_name: str,
    *,
    preview: Any = None,
    error: str | None = None,
    typed: str | None = None,
    status_code: int = 200,
) -> Response:
    """The reminders page: the schedule (run time, else the environment's) and the texts."""
    await runtime_settings.refresh(session, rt, force=True)
    days = runtime_settings.reminder_days(rt)
    listed = await notice_templates.list_templates(session)
    current = next(e for e in listed if e.event.name == event_name)
    return render(
        request,
        desk,
        "notices.html",
        {
            "events": list(EVENTS),
            "event": current.event,
            "texts": current.texts,
            "reminder_days": days,
            "reminder_days_typed": typed if typed is not None else ", ".join(map(str, days)),
            "reminder_days_stored": runtime_settings.reminder_days_stored(rt),
            "reminder_max_values": schedule.MAX_VALUES,
            "reminder_max_days": schedule.MAX_DAYS,
            "preview": preview,
            "languages": LANGUAGES,
            "error": error,
        },
        status_code=status_code,
    )


@router.post(ADMIN + "/reminders")
async def reminders_save(request: Request, desk: AdminDesk, session: Session, rt: RT) -> Response:
    """The expiry reminder schedule, at run time (every process within the cache time)."""
    form = await read_form(request, desk)
    typed = form.get("days", "")
    try:
        await _savepoint(
            session,
            schedule.set_reminder_days(
                session, rt, actor=staff_of(desk).account, text=typed,
                reason=form.get("reason", ""),
            ),
        )
    except DomainError as exc:
        return await _notices(request, desk, session, rt, "expiry_reminder",
                              error=describe(request, exc), typed=typed,
                              status_code=exc.status)
    return done(ADMIN + "/notices", "saved")


@router.post(ADMIN + "/notices/{event}/{language}")
async def notice_save(
    request: Request, event: str, language: str, desk: AdminDesk, session: Session, rt: RT
) -> Response:
    form = await read_form(request, desk)
    channel: Literal["sms", "email"] = "email" if form.get("channel") == "email" else "sms"
    if language not in LANGUAGES:
        return _refused(
            request, desk, InvalidInput("language_unknown", "There is no such language.")
        )
    try:
        preview = await _savepoint(
            session,
            notice_templates.set_template(
                session,
                actor=staff_of(desk).account,
                event_name=event,
                language=language,
                channel=channel,
                subject=form.get("subject", ""),
                body=form.get("body", ""),
                settings=rt.settings,
            ),
        )
    except DomainError as exc:
        return _refused(request, desk, exc)
    return await _notices(request, desk, session, rt, event, preview=preview)


# ---------------------------------------------------------------- staff


@router.get(ADMIN + "/staff")
async def staff_page(request: Request, desk: AdminDesk, session: Session) -> Response:
    rows = (
        await session.scalars(
            select(Account).where(Account.role.in_([Role.agent, Role.admin])).order_by(Account.name)
        )
    ).all()
    return render(request, desk, "staff.html", {"people": rows})


@router.post(ADMIN + "/staff")
async def staff_create(request: Request, desk: AdminDesk, session: Session, rt: RT) -> Response:
    form = await read_form(request, desk)
    role = Role.admin if form.get("role") == "admin" else Role.agent
    try:
        created = await _savepoint(
            session,
            accounts.create_staff(
                session,
                rt,
                name=form.get("name", ""),
                email=form.get("email", ""),
                password=form.get("password", ""),
                role=role,
            ),
        )
    except DomainError as exc:
        return _refused(request, desk, exc)
    await audit.record(
        session,
        actor=staff_of(desk).account,
        action="staff.create",
        subject_type="account",
        subject_id=created.id,
        data={"role": role.value, "email": created.email},
    )
    return done(ADMIN + "/staff", "saved")


@router.post(ADMIN + "/staff/{staff_id}")
async def staff_update(
    request: Request, staff_id: str, desk: AdminDesk, session: Session
) -> Response:
    form = await read_form(request, desk)
    target_id = parse_uuid(staff_id)
    person = await session.get(Account, target_id) if target_id else None
    if person is None or person.role not in (Role.agent, Role.admin):
        return error_page(
            request,
            desk,
            404,
            "Not found",
            translate(request.state.language, "There is no such staff member."),
        )
    me = staff_of(desk).account
    before = {"role": person.role.value, "active": person.active}
    role = form.get("role")
    new_role = Role(role) if role in ("agent", "admin") else person.role
    active = form["active"] == "yes" if form.get("active") in ("yes", "no") else person.active
    if person.id == me.id and (new_role != Role.admin or not active):
        return _refused(
            request,
            desk,
            InvalidInput(
                "own_role", "You cannot take away your own admin role or deactivate yourself."
            ),
        )
    person.role, person.active = new_role, active
    after = {"role": person.role.value, "active": person.active}
    if after != before:
        await staff_sessions.revoke_all(session, person.id)
        await audit.record(
            session,
            actor=me,
            action="staff.update",
            subject_type="account",
            subject_id=person.id,
            reason=form.get("reason", ""),
            data={"before": before, "after": after},
        )
    return done(ADMIN + "/staff", "saved")


# ---------------------------------------------------------------- peer API keys


@router.get(ADMIN + "/peers")
async def peers_page(request: Request, desk: AdminDesk, session: Session) -> Response:
    return render(
        request, desk, "peers.html", {"peers": await peers.list_peers(session), "new_key": None}
    )


@router.post(ADMIN + "/peers")
async def peer_create(request: Request, desk: AdminDesk, session: Session) -> Response:
    form = await read_form(request, desk)
    try:
        peer, key = await _savepoint(session, peers.create(session, name=form.get("name", "")))
    except DomainError as exc:
        return _refused(request, desk, exc)
    except ValueError:
        return _refused(request, desk, InvalidInput("peer_name", "Give the peer a name."))
    await audit.record(
        session,
        actor=staff_of(desk).account,
        action="peer.create",
        subject_type="peer",
        subject_id=peer.name,
        data={"key_prefix": peer.key_prefix, "scopes": peer.scopes},
    )
    # The key is shown once, on this answer only (never stored, never in the audit log).
    return render(
        request,
        desk,
        "peers.html",
        {"peers": await peers.list_peers(session), "new_key": key, "new_peer": peer.name},
    )


@router.post(ADMIN + "/peers/{name}/revoke")
async def peer_revoke(request: Request, name: str, desk: AdminDesk, session: Session) -> Response:
    await read_form(request, desk)
    try:
        peer = await _savepoint(session, peers.revoke(session, name=name))
    except DomainError as exc:
        return _refused(request, desk, exc)
    await audit.record(
        session,
        actor=staff_of(desk).account,
        action="peer.revoke",
        subject_type="peer",
        subject_id=peer.name,
    )
    return done(ADMIN + "/peers", "saved")


# ---------------------------------------------------------------- refunds waiting


@router.get(ADMIN + "/refunds")
async def refunds_page(request: Request, desk: AdminDesk, session: Session) -> Response:
    waiting = await actions.pending_refund_requests(session)
    return render(request, desk, "refunds.html", {"requests": waiting})


@router.post(ADMIN + "/refunds/{event_id}/approve")
async def refund_approve(
    request: Request, event_id: str, desk: AdminDesk, session: Session, rt: RT
) -> Response:
    async def load(form: dict[str, str]) -> tuple[AuditEvent, Order] | Response:
        eid = parse_uuid(event_id)
        event = await session.get(AuditEvent, eid) if eid else None
        if event is None or event.action != "refund.requested":
            return error_page(
                request,
                desk,
                404,
                "Not found",
                translate(request.state.language, "There is no such request."),
            )
        order = await session.get(Order, uuid.UUID(event.subject_id))
        if order is None or order.state != OrderState.fulfilled:
            return done(ADMIN + "/refunds", "saved")  # settled meanwhile: nothing to do
        return event, order

    async def work(form: dict[str, str], found: tuple[AuditEvent, Order]) -> None:
        event, order = found
        reason = f"{event.reason} (approved: {form.get('reason', '')})".strip()
        await order_refunds.refund(
            session, rt, order, actor=staff_of(desk).account, reason=reason[:500]
        )

    return await act(request, desk, session, load, work,
                     lambda _found, _result: done(ADMIN + "/refunds", "refunded"))


# ---------------------------------------------------------------- audit log


@router.get(ADMIN + "/audit")
async def audit_page(request: Request, desk: AdminDesk, session: Session, rt: RT) -> Response:
    q = request.query_params
    query = select(AuditEvent, Account.name).outerjoin(Account, Account.id == AuditEvent.actor_id)
    if q.get("action"):
        query = query.where(AuditEvent.action.startswith(q["action"][:64]))
    actor = parse_uuid(q.get("actor", ""))
    if actor:
        query = query.where(AuditEvent.actor_id == actor)
    whose = parse_uuid(q.get("account", ""))
    if whose:
        query = query.where(AuditEvent.account_id == whose)
    today = clock.now().astimezone(formatting.zone(rt.settings.timezone)).date()
    start = _day(q.get("from"), today - timedelta(days=30))
    end = _day(q.get("to"), today)
    low, high = dashboard._bounds(start, end, rt.settings.timezone)
    query = query.where(AuditEvent.at >= low, AuditEvent.at < high)
    newest_first = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(200)
    rows = (await session.execute(newest_first)).all()
    return render(
        request,
        desk,
        "audit.html",
        {
            "events": rows,
            "filters": {
                "action": q.get("action", ""),
                "actor": q.get("actor", ""),
                "account": q.get("account", ""),
                "from": start.isoformat(),
                "to": end.isoformat(),
            },
        },
    )
