"""HTTP on the worker: /metrics, /healthz, /readyz and the customer API.

`GET /customers/{id}` answers from the worker that owns the customer's partition; any
other worker proxies the request there (the owners are announced on the members
topic). The API shows customer data, so it needs `Authorization: Bearer
<SIYU_API_TOKEN>`; only `SIYU_API_AUTH=false` turns that off. An id with `/` or other
reserved characters is percent-encoded in the URL (`/customers/a%2Fb` is customer `a/b`).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from yarl import URL

from siyu_stream.build import build
from siyu_stream.core.actions import yuan
from siyu_stream.core.clock import format_rfc3339
from siyu_stream.core.state import CustomerState
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.observe.view import WorkerView

log = logging.getLogger("siyu_stream.observe.web")
ROUTED = "X-Siyu-Routed-By"
_WORKER: web.AppKey[WorkerView] = web.AppKey("worker")
_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")


def public_state(state: CustomerState) -> dict[str, Any]:
    """The state as an operator reads it: times in RFC 3339, money in yuan and fen."""

    def when(ms: int | None) -> str | None:
        return None if ms is None else format_rfc3339(ms)

    return {
        "layer": state.layer,
        "tier": state.tier,
        "health": state.health,
        "membership": state.membership,
        "member_until": when(state.member_until),
        "net_spend_fen": state.spend_fen,
        "net_spend": yuan(state.spend_fen),
        "paid_orders": state.orders,
        "first_order_at": when(state.first_order_at),
        "last_order_at": when(state.last_order_at),
        "carriers": {c: when(at) for c, at in sorted(state.carriers.items())},
        "join_source": state.join_source,
        "referrer_id": state.referrer_id,
        "referrals": state.referrals,
        "staff": state.last_staff or state.owner_staff,
        "last_inbound_at": when(state.last_inbound_at),
        "last_outbound_at": when(state.last_outbound_at),
        "waiting_for_reply_since": when(state.pending_reply_since),
        "unanswered_outbound": state.outbound_streak,
        "gifts_granted": list(state.gifts),
        "timers": {name: when(t.due) for name, t in sorted(state.timers.items())},
    }


def _authorized(request: web.Request, worker: WorkerView) -> bool:
    settings = worker.settings
    if not settings.api_auth:
        return True
    parts = request.headers.get("Authorization", "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":  # the scheme is case-insensitive
        return False
    # Header bytes that are not UTF-8 reach us as surrogate escapes, which str.encode and
    # hmac.compare_digest(str, str) refuse with an exception; a token is visible ASCII
    # (Settings checks that), so anything else is simply not it.
    token = parts[1]
    if not token.isascii() or settings.api_token is None:
        return False
    return hmac.compare_digest(token.encode("ascii"), settings.api_token.encode("ascii"))


def _customer_id(request: web.Request) -> str | None:
    """The id in the URL, percent-decoded exactly once; None when it is not UTF-8.

    Read from the raw path rather than match_info, whose unquoting rules (which escapes
    it keeps, what it does with bytes that are not UTF-8) have changed between aiohttp
    versions. The route matched one segment, so the raw id is the last one.
    """
    segment = request.rel_url.raw_path.rsplit("/", 1)[-1]
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return None


async def customer(request: web.Request) -> web.StreamResponse:
    worker = request.app[_WORKER]
    if not _authorized(request, worker):
        return web.json_response(
            {"error": "missing or wrong bearer token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="siyu-stream"'},
        )
    customer_id = _customer_id(request)
    if customer_id is None:
        return web.json_response({"error": "customer id is not percent-encoded UTF-8"}, status=400)
    found = worker.customer(customer_id)
    if found is None:
        partition = partition_for(customer_id.encode(), worker.settings.partitions)
        return await _proxy(request, worker, partition, customer_id)
    if found.state is None:
        return web.json_response({"error": f"unknown customer {customer_id}"}, status=404)
    return web.json_response(
        {
            "customer_id": customer_id,
            "partition": found.partition,
            "served_by": worker.url,
            "state": public_state(found.state),
            "timeline": found.timeline,  # newest first
        }
    )


async def _proxy(
    request: web.Request, worker: WorkerView, partition: int, customer_id: str
) -> web.StreamResponse:
    owner = worker.owner(partition)
    if owner is None or owner == worker.url or ROUTED in request.headers:
        return web.json_response(
            {"error": f"partition {partition} has no known owner yet; retry"}, status=503
        )
    headers = {"Authorization": request.headers.get("Authorization", ""), ROUTED: worker.url}
    # encoded once here (every reserved character, `/` included) and sent as is: yarl
    # would otherwise normalize the path, and request.path has `%2F` already decoded
    url = URL(f"{owner}/customers/{quote(customer_id, safe='')}", encoded=True)
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as answer,
        ):
            body = await answer.read()
            return web.Response(body=body, status=answer.status, content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("proxy to %s failed: %s", url, exc)
        return web.json_response({"error": f"owner {owner} unreachable"}, status=502)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    worker = request.app[_WORKER]
    ok = worker.alive
    # which build of the rule core this worker runs: "compiled" (mypyc) or "interpreted"
    return web.json_response({"alive": ok, "build": build()}, status=200 if ok else 503)


async def readyz(request: web.Request) -> web.Response:
    worker = request.app[_WORKER]
    ready = worker.is_ready
    body = {"ready": ready, "partitions": worker.partitions()}
    return web.json_response(body, status=200 if ready else 503)


def make_app(worker: WorkerView, registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app[_WORKER] = worker
    app[_REGISTRY] = registry
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/customers/{customer_id}", customer)
    return app


async def start(worker: WorkerView, registry: CollectorRegistry) -> web.AppRunner:
    app = make_app(worker, registry)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, worker.settings.web_host, worker.settings.web_port)
    await site.start()
    log.info("http on %s:%d", worker.settings.web_host, worker.settings.web_port)
    return runner
