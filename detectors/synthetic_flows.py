"""Normal service flows for the synthetic generator, written as data.

A flow is the list of log steps one piece of work leaves behind (a checkout, a login, a
cache restart). Anomalies (`synthetic_anomalies`) are mostly these same flows with a step
dropped, moved or repeated, so the normal flows here are the reference they deviate from.

Each step is written as one line, `"LEVEL service | message"`, optionally prefixed with
`"*lo-hi "` to repeat it lo..hi times (lo may be 0: an optional step). Messages name their
variables as `{field}` (see `synthetic_fields.GENERATORS`); `{attempt}` is the repeat number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^(?:\*(?P<lo>\d+)-(?P<hi>\d+) )?(?P<level>[A-Z]+) (?P<service>[\w-]+) \| (?P<text>.+)$")


@dataclass(frozen=True, slots=True)
class Step:
    level: str
    service: str
    text: str
    min_repeat: int = 1
    max_repeat: int = 1


@dataclass(frozen=True, slots=True)
class Flow:
    """A named list of steps. The name travels with each sequence for debugging."""

    name: str
    steps: tuple[Step, ...]

    @property
    def max_lines(self) -> int:
        return sum(step.max_repeat for step in self.steps)


def parse_step(spec: str) -> Step:
    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(f"bad step spec {spec!r}; expected '[*lo-hi ]LEVEL service | message'")
    lo, hi = match["lo"], match["hi"]
    return Step(
        level=match["level"],
        service=match["service"],
        text=match["text"],
        min_repeat=int(lo) if lo else 1,
        max_repeat=int(hi) if hi else 1,
    )


def flow(name: str, *specs: str) -> Flow:
    return Flow(name, tuple(parse_step(spec) for spec in specs))


def without(base: Flow, name: str, *fragments: str) -> Flow:
    """`base` minus every step whose message contains one of `fragments`: a missing step."""
    kept = tuple(s for s in base.steps if not any(f in s.text for f in fragments))
    if len(kept) == len(base.steps):
        raise ValueError(f"{name}: no step of {base.name} matches {fragments}")
    return Flow(name, kept)


def moved_before(base: Flow, name: str, mover: str, anchor: str) -> Flow:
    """`base` with the step containing `mover` logged just before the one containing `anchor`."""
    steps = list(base.steps)
    moving = next(s for s in steps if mover in s.text)
    steps.remove(moving)
    at = next(i for i, s in enumerate(steps) if anchor in s.text)
    steps.insert(at, moving)
    return Flow(name, tuple(steps))


def with_steps(base: Flow, name: str, after: str, *specs: str) -> Flow:
    """`base` with extra steps inserted after the step containing `after`."""
    steps = list(base.steps)
    at = next(i for i, s in enumerate(steps) if after in s.text) + 1
    steps[at:at] = [parse_step(spec) for spec in specs]
    return Flow(name, tuple(steps))


# --- normal flows -------------------------------------------------------------------------
# One per kind of work. Each anomaly category builds on the flows of its own services, so a
# sequence model can tell categories apart by which flow is broken, not only by keywords.

CHECKOUT = flow(
    "checkout",
    "INFO api-gateway | POST /api/v1/orders from {ip} req={req} trace={trace}",
    "INFO order-service | Request {req} received for order {order} items={n_small}",
    "INFO inventory | Reserved {n_small} units of {sku} for order {order}",
    "INFO payment | Charge {txn} authorized amount={amount} EUR for order {order}",
    "INFO db | Transaction {txid} begin isolation=read_committed",
    "INFO db | INSERT INTO orders rows=1 in {ms}ms",
    "INFO payment | Charge {txn} commit acknowledged by processor",
    "INFO db | Transaction {txid} committed in {ms}ms",
    "INFO order-service | Order {order} confirmed, emitting order.created",
    "INFO api-gateway | Request {req} completed in {ms}ms status=201",
)

ORDER_UPDATE = flow(
    "order_update",
    "INFO api-gateway | PUT /api/v1/orders/{order} from {ip} req={req}",
    "INFO order-service | Handling {req} status update for order {order}",
    "INFO db | Query executed in {ms}ms: UPDATE orders SET status rows=1",
    "INFO db | Transaction {txid} committed in {ms}ms",
    "INFO order-service | Response sent for {req} status=200 bytes={bytes}",
    "INFO queue | Published order.updated partition={n_small} offset={offset}",
    "INFO api-gateway | Request {req} completed in {ms}ms status=200",
)

LOGIN = flow(
    "login",
    "INFO api-gateway | POST /api/v1/login from {ip} req={req}",
    "INFO auth-service | Login attempt for user {user} from {ip}",
    "INFO auth-service | Password verified for user {user}",
    "INFO auth-service | MFA challenge {hex} passed for user {user}",
    "INFO cache | SET session:{sid} ttl=3600",
    "INFO auth-service | Session {sid} created for user {user}",
    "INFO auth-service | Token issued for user {user} kid={hex} expires_in=3600",
    "INFO api-gateway | Request {req} completed in {ms}ms status=200",
)

# A mistyped password that the user then gets right: an error word in a normal sequence.
LOGIN_AFTER_TYPO = with_steps(
    LOGIN,
    "login_after_typo",
    "Login attempt",
    "WARN auth-service | Login failed for user {user} from {ip}: invalid password attempt=1",
    "INFO auth-service | Login attempt for user {user} from {ip}",
)

TOKEN_REFRESH = flow(
    "token_refresh",
    "INFO api-gateway | POST /api/v1/token/refresh from {ip} req={req}",
    "INFO auth-service | Token refreshed for user {user} from {ip} kid={hex}",
    "INFO auth-service | Session {sid} extended for user {user}",
    "INFO api-gateway | Request {req} completed in {ms}ms status=200",
    "INFO api-gateway | GET /api/v1/orders from {ip} req={req_f}",
    "INFO auth-service | Token validated for user {user} scope=orders:read",
    "INFO order-service | Listed {n_small} orders for user {user}",
)

UPSTREAM_READ = flow(
    "upstream_read",
    "INFO api-gateway | GET /api/v1/inventory/{sku} from {ip} req={req}",
    "INFO api-gateway | Resolved inventory.svc.cluster.local to {ip2}",
    "INFO api-gateway | Connected to upstream {ip2}:8080 in {ms}ms",
    "INFO inventory | Handling {req} GET /items/{sku}",
    "INFO db | Query executed in {ms}ms: SELECT stock rows={n_small}",
    "INFO inventory | Response sent for {req} status=200 bytes={bytes}",
    "INFO api-gateway | Request {req} completed in {ms}ms status=200",
)

# Up to two INFO retries are an ordinary cold start; the anomaly is a long burst of them.
DB_CONNECT = flow(
    "db_connect",
    "INFO order-service | Connecting to db at {ip2}:5432 pool=order-pool",
    "*0-2 INFO order-service | Retrying connection to db at {ip2}:5432 attempt={attempt}",
    "INFO db | Connection accepted from {ip} pid={pid}",
    "INFO order-service | Connection pool ready size={n_small}",
    "INFO order-service | Consumer started on topic orders.v1 partition={n_small}",
    "INFO queue | Consumer group order-workers rebalanced members={n_small}",
    "INFO order-service | Health endpoint listening on :{port}",
)

CACHE_STARTUP = flow(
    "cache_startup",
    "INFO kubelet | Pulling image registry.internal/cache:{ver}",
    "INFO kubelet | Started container cache in pod cache-{pod}",
    "INFO cache | Loading snapshot /data/dump-{hex}.rdb size={bytes}",
    "INFO cache | Cache warmed with {n} keys in {ms}ms",
    "INFO kubelet | Readiness probe passed for pod cache-{pod}",
    "INFO cache | Memory usage {pct}% of limit",
)

CACHE_SHUTDOWN = flow(
    "cache_shutdown",
    "INFO kubelet | Scaling down deployment cache replicas={n_small}",
    "INFO kubelet | Sending SIGTERM to pod cache-{pod}",
    "INFO cache | Shutdown requested, draining {n} connections",
    "INFO cache | Flushed {n} dirty keys to disk",
    "INFO cache | Connections drained in {ms}ms",
    "INFO kubelet | Container cache in pod cache-{pod} exited code={code}",
)

# A single eviction is routine housekeeping; a run of them is memory pressure.
CACHE_STEADY = flow(
    "cache_steady",
    "INFO cache | Stats hits={n} misses={n} keys={n}",
    "INFO cache | Evicted {n} keys to stay under maxmemory used={pct}%",
    "INFO cache | Background save started by pid {pid}",
    "INFO cache | DB saved on disk in {ms}ms",
    "INFO cache | Stats hits={n} misses={n} keys={n}",
    "INFO kubelet | Liveness probe ok for pod cache-{pod}",
)

QUEUE_CONSUME = flow(
    "queue_consume",
    "INFO queue | Delivered message {msgid} on topic payments.v1 partition={n_small}",
    "INFO payment | Processing message {msgid} for charge {txn}",
    "INFO db | Query executed in {ms}ms: INSERT INTO ledger rows=1",
    "INFO payment | Ledger entry {uuid} written for charge {txn}",
    "INFO queue | Message {msgid} acknowledged offset={offset}",
    "INFO payment | Batch of {n_small} messages processed in {ms}ms",
)

HEALTH_SWEEP = flow(
    "health_sweep",
    "INFO api-gateway | Health sweep started targets={n_small}",
    "INFO api-gateway | Health check payment is healthy latency={ms}ms",
    "INFO api-gateway | Health check order-service is healthy latency={ms}ms",
    "INFO api-gateway | Health check inventory is healthy latency={ms}ms",
    "INFO api-gateway | Health check auth-service is healthy latency={ms}ms",
    "INFO api-gateway | Health sweep finished in {ms}ms",
)

REPLICATION = flow(
    "replication",
    "INFO db | Replica {host} streaming from lsn {lsn}",
    "INFO db | Replica {host} applied WAL segment {walseg}",
    "INFO db | Checksum verified for WAL segment {walseg}",
    "INFO db | Replica {host} applied WAL segment {walseg}",
    "INFO db | Checksum verified for WAL segment {walseg}",
    "INFO db | Replication lag {ms}ms on replica {host}",
)

# (flow, weight): the mix of everyday traffic. Weights are relative.
NORMAL_FLOWS: tuple[tuple[Flow, float], ...] = (
    (CHECKOUT, 3.0),
    (ORDER_UPDATE, 2.0),
    (LOGIN, 3.0),
    (LOGIN_AFTER_TYPO, 1.0),
    (TOKEN_REFRESH, 1.0),
    (UPSTREAM_READ, 2.0),
    (DB_CONNECT, 1.5),
    (CACHE_STARTUP, 1.0),
    (CACHE_SHUTDOWN, 1.0),
    (CACHE_STEADY, 1.0),
    (QUEUE_CONSUME, 2.0),
    (HEALTH_SWEEP, 1.0),
    (REPLICATION, 1.0),
)

# --- benign extras for normal sequences ---------------------------------------------------
# Noisy episodes carry WARN/ERROR/"failed"/"timeout" words but end in recovery: they are what
# makes a keyword grep raise false alarms on healthy traffic.
NOISY_EPISODES: tuple[Flow, ...] = (
    flow(
        "retry_then_success",
        "WARN order-service | Call to inventory hit timeout after {ms}ms, retrying attempt=1",
        "INFO order-service | Call to inventory succeeded on attempt 2",
    ),
    flow(
        "handled_processor_error",
        "ERROR payment | Processor returned 502 for charge {txn_f}; handled, switching to secondary",
        "INFO payment | Secondary processor accepted charge {txn_f}",
    ),
    flow(
        "job_transient_exception",
        "ERROR scheduler | Job {job} raised TransientException, will retry next run",
        "INFO scheduler | Job {job} completed on retry in {ms}ms",
    ),
    flow(
        "broker_reconnect",
        "WARN queue | Broker connection to {ip_f}:9092 failed once, reconnecting",
        "INFO queue | Reconnected to broker {ip_f}:9092 in {ms}ms",
    ),
    flow(
        "tls_handshake_noise",
        "WARN api-gateway | TLS handshake failed from {ip_f}: unknown certificate authority",
    ),
)

# Quiet episodes are WARNs with no error word: noise that a keyword grep happens to ignore.
QUIET_EPISODES: tuple[Flow, ...] = (
    flow(
        "deprecated_api", "WARN api-gateway | Deprecated API version v1 used by client {ip_f}; migrate to v2"
    ),
    flow("slow_query", "WARN db | Slow query took {slow_ms}ms: SELECT * FROM orders WHERE customer_id = $1"),
    flow(
        "slow_image_pull",
        "WARN kubelet | Image pull for registry.internal/order-service:{ver} took {n_small}s",
    ),
    flow(
        "deprecated_config", "WARN order-service | Config key cache.ttl is deprecated, use cache.ttl_seconds"
    ),
)

# Background lines from unrelated work, interleaved at random to vary length and position.
FILLERS: tuple[Step, ...] = tuple(
    parse_step(spec)
    for spec in (
        "INFO api-gateway | GET /healthz from {ip_f} status=200 in {ms}ms",
        "INFO kubelet | Liveness probe ok for pod {service_f}-{pod_f}",
        "INFO queue | Consumer group analytics lag={n} partition={n_small}",
        "INFO cache | Stats hits={n} misses={n} keys={n}",
        "DEBUG order-service | Feature flags refreshed version={hex}",
        "INFO scheduler | Job {job_f} scheduled next run in {n}s",
        "INFO api-gateway | GET /api/v1/catalog from {ip_f} req={req_f} status=200 in {ms}ms",
    )
)
