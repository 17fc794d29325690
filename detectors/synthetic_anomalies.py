"""Anomalous flows for the synthetic generator, two kinds per category.

*Loud* flows say what went wrong (ERROR, FATAL, "failed", "timeout"): a keyword grep finds
them. *Silent* flows carry no error word at all; what is wrong is the structure: a step that
never comes, steps in the wrong order, an INFO-level burst of retries, or an ordinary line in a
context where it should not appear. Every category has both kinds and builds on the normal
flows of its own services, so the category has to be learned from the shape of the sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors.synthetic_flows import (
    CACHE_SHUTDOWN,
    CHECKOUT,
    LOGIN,
    ORDER_UPDATE,
    UPSTREAM_READ,
    Flow,
    flow,
    moved_before,
    with_steps,
    without,
)


@dataclass(frozen=True, slots=True)
class AnomalyFlows:
    loud: tuple[Flow, ...]
    silent: tuple[Flow, ...]


# --- service_cascade_failure: one dependency goes down and takes its callers with it -------

_CASCADE = AnomalyFlows(
    loud=(
        flow(
            "payment_outage_cascade",
            "INFO api-gateway | POST /api/v1/orders from {ip} req={req} trace={trace}",
            "INFO order-service | Request {req} received for order {order} items={n_small}",
            "ERROR payment | Upstream processor returned 503 for charge {txn}",
            "ERROR order-service | Payment call failed for order {order}: 503 from payment",
            "WARN inventory | Releasing reservation for order {order} after upstream failure",
            "*2-4 ERROR api-gateway | Request {req_f} failed status=502 upstream=order-service",
            "ERROR order-service | Circuit breaker opened for payment after {n_small} failures",
            "*1-3 ERROR api-gateway | Request {req_f} failed status=503 upstream=order-service",
        ),
        flow(
            "db_outage_cascade",
            "FATAL db | Terminating connection due to administrator command pid={pid}",
            "*1-2 ERROR order-service | Query on orders raised PSQLException: connection closed",
            "ERROR inventory | Stock lookup failed: order-service returned 500",
            "ERROR payment | Could not record charge {txn}: order-service unavailable (500)",
            "*2-4 ERROR api-gateway | Request {req_f} failed status=500 upstream=order-service",
        ),
    ),
    silent=(
        # Callers quietly switch to fallbacks, one after the other: all INFO, all "working".
        flow(
            "fallback_chain",
            "INFO api-gateway | POST /api/v1/orders from {ip} req={req} trace={trace}",
            "INFO order-service | Request {req} received for order {order} items={n_small}",
            "INFO order-service | Circuit breaker for payment changed state closed->open",
            "*2-4 INFO order-service | Serving fallback response for {req_f} (payment unavailable)",
            "INFO inventory | Circuit breaker for order-service changed state closed->open",
            "*2-3 INFO api-gateway | Serving stale cached response for {req_f} from edge cache",
        ),
        # The normal sweep's "healthy" lines turn into "degraded" and pool removals spread.
        flow(
            "health_degradation",
            "INFO api-gateway | Health sweep started targets={n_small}",
            "INFO api-gateway | Health check payment is degraded latency={slow_ms}ms",
            "INFO api-gateway | Upstream payment removed from pool healthy=0/{n_small}",
            "INFO api-gateway | Health check order-service is degraded latency={slow_ms}ms",
            "INFO api-gateway | Upstream order-service removed from pool healthy=0/{n_small}",
            "INFO api-gateway | Health check inventory is degraded latency={slow_ms}ms",
            "INFO api-gateway | Health sweep finished in {slow_ms}ms",
        ),
    ),
)

# --- authentication_failure: logins that should not succeed, or succeed oddly -------------

_AUTH = AnomalyFlows(
    loud=(
        flow(
            "brute_force",
            "INFO api-gateway | POST /api/v1/login from {ip} req={req}",
            "*3-6 WARN auth-service | Login failed for user {user} from {ip}: invalid password",
            "WARN auth-service | Account {user} locked after {n_small} failed attempts",
            "*1-3 ERROR api-gateway | Access denied for {ip} req={req_f} status=403",
            "ERROR auth-service | Rate limiter blocked {ip} for {n_small}s",
        ),
        flow(
            "forged_tokens",
            "INFO api-gateway | GET /api/v1/orders from {ip} req={req}",
            "*3-5 ERROR auth-service | JWT signature verification failed kid={hex_f} user={user}",
            "WARN auth-service | Unknown signing key kid={hex_f} presented by {ip}",
            "*1-3 ERROR api-gateway | Access denied for {ip} req={req_f} status=401",
        ),
    ),
    silent=(
        # A token is issued although no session was ever created.
        without(LOGIN, "login_without_session", "Session {sid} created", "SET session:"),
        # "Logged in" right after the account was locked: a normal line in the wrong place.
        flow(
            "login_after_lockout",
            "INFO api-gateway | POST /api/v1/login from {ip} req={req}",
            "*2-3 INFO auth-service | Password check returned mismatch for user {user} from {ip}",
            "INFO auth-service | Account {user} locked by policy lockout-5",
            "INFO auth-service | Login attempt for user {user} from {ip2}",
            "INFO auth-service | Password verified for user {user}",
            "INFO auth-service | Session {sid} created for user {user}",
            "INFO auth-service | Token issued for user {user} kid={hex} expires_in=3600",
            "INFO api-gateway | Request {req} completed in {ms}ms status=200",
        ),
        # One refresh is routine; a burst from many addresses is a stolen refresh token.
        flow(
            "token_refresh_storm",
            "INFO api-gateway | POST /api/v1/token/refresh from {ip} req={req}",
            "*6-9 INFO auth-service | Token refreshed for user {user} from {ip_f} kid={hex}",
            "INFO auth-service | Session {sid} extended for user {user}",
        ),
    ),
)

# --- resource_exhaustion: memory, connections or disk run out -----------------------------

_CRASH_CYCLE = (
    "INFO kubelet | Started container cache in pod cache-{pod}",
    "INFO cache | Loading snapshot /data/dump-{hex}.rdb size={bytes}",
    "INFO kubelet | Container cache in pod cache-{pod} exited code=137",
    "INFO kubelet | Back-off restarting container cache in pod cache-{pod}",
)

_RESOURCE = AnomalyFlows(
    loud=(
        flow(
            "oom_kill",
            "INFO kubelet | Started container order-service in pod order-service-{pod}",
            "WARN order-service | Heap usage at {pct_hi}% of limit, forcing GC",
            "*1-3 WARN order-service | GC pause {slow_ms}ms exceeded budget",
            "ERROR order-service | java.lang.OutOfMemoryError: Java heap space",
            "ERROR kubelet | Container order-service in pod order-service-{pod} OOMKilled exit=137",
            "WARN kubelet | Back-off restarting container order-service in pod order-service-{pod}",
        ),
        flow(
            "pool_and_disk_exhausted",
            "INFO order-service | Handling {req} status update for order {order}",
            "*2-3 ERROR order-service | Connection pool exhausted, {n_small} requests waiting",
            "FATAL db | Sorry, too many clients already pid={pid}",
            "ERROR db | Could not extend file base/{n}/{n}: No space left on device",
            "ERROR order-service | Request {req} failed status=503 after {slow_ms}ms",
        ),
    ),
    silent=(
        # Eviction after eviction: the cache is under memory pressure, at INFO level.
        flow(
            "eviction_storm",
            "INFO cache | Stats hits={n} misses={n} keys={n}",
            "*6-9 INFO cache | Evicted {n} keys to stay under maxmemory used={pct_hi}%",
            "INFO kubelet | Node {node} condition MemoryPressure=True",
        ),
        # A snapshot load and "cache warmed" in the middle of a shutdown: the pod doubles its
        # memory while draining. Both lines are normal at startup, not here.
        with_steps(
            CACHE_SHUTDOWN,
            "warm_during_drain",
            "Shutdown requested",
            "INFO cache | Loading snapshot /data/dump-{hex}.rdb size={bytes}",
            "INFO cache | Cache warmed with {n} keys in {ms}ms",
            "INFO cache | Memory usage {pct_hi}% of limit",
        ),
        # Start, load, exit, back off, again: a crash loop with no error line at all.
        flow(
            "crash_loop",
            *(_CRASH_CYCLE * 2),
            "*0-1 INFO kubelet | Started container cache in pod cache-{pod}",
        ),
    ),
)

# --- network_timeout: peers that cannot be reached or do not answer -----------------------

_NETWORK = AnomalyFlows(
    loud=(
        flow(
            "upstream_timeout",
            "INFO api-gateway | GET /api/v1/inventory/{sku} from {ip} req={req}",
            "INFO api-gateway | Resolved inventory.svc.cluster.local to {ip2}",
            "*2-4 WARN api-gateway | Connect to upstream {ip2}:8080 timeout after {slow_ms}ms, retrying",
            "ERROR api-gateway | Request {req} failed: upstream timeout status=504",
            "*1-3 ERROR api-gateway | Request {req_f} failed: upstream timeout status=504",
        ),
        flow(
            "db_connection_refused",
            "INFO order-service | Connecting to db at {ip2}:5432 pool=order-pool",
            "*3-5 WARN order-service | Connection to {ip2}:5432 refused, retrying attempt={attempt}",
            "ERROR order-service | Could not acquire db connection within 30000ms",
            "ERROR order-service | Request {req_f} failed with SQLTimeoutException",
        ),
    ),
    silent=(
        # The normal cold start's one or two retries, but six or more and never connected.
        flow(
            "db_retry_burst",
            "INFO order-service | Connecting to db at {ip2}:5432 pool=order-pool",
            "*6-9 INFO order-service | Retrying connection to db at {ip2}:5432 attempt={attempt}",
            "INFO order-service | Health endpoint listening on :{port}",
        ),
        # The upstream never answers; the client gives up and the gateway logs status 499.
        with_steps(
            without(UPSTREAM_READ, "client_gave_up", "Query executed", "Response sent", "completed in"),
            "client_gave_up",
            "Handling {req}",
            "INFO api-gateway | Client {ip} closed connection for {req} after {slow_ms}ms status=499",
            "*1-3 INFO api-gateway | Client {ip_f} closed connection for {req_f} after {slow_ms}ms status=499",
        ),
    ),
)

# --- data_corruption: data that is wrong, half-written or unverified ----------------------

_DATA = AnomalyFlows(
    loud=(
        flow(
            "checksum_mismatch",
            "INFO db | Replica {host} streaming from lsn {lsn}",
            "INFO db | Replica {host} applied WAL segment {walseg}",
            "ERROR db | Checksum mismatch on page {n} of relation orders",
            "ERROR db | Could not read block {n} in file base/{n}/{n}: read only {bytes} bytes",
            "FATAL db | Replica {host} stopped: WAL record corrupt at {lsn}",
        ),
        flow(
            "undecodable_events",
            "INFO queue | Delivered message {msgid} on topic payments.v1 partition={n_small}",
            "ERROR payment | Failed to deserialize message {msgid}: unexpected end of input",
            "*1-3 ERROR payment | Failed to deserialize message {msgid_f}: invalid UTF-8 at byte {n}",
            "WARN payment | Message {msgid} moved to dead-letter topic payments.v1.dlq",
            "ERROR payment | Ledger balance check raised IntegrityException for charge {txn}",
        ),
    ),
    silent=(
        # The order is confirmed but the payment and the transaction never commit.
        without(CHECKOUT, "checkout_commit_missing", "commit acknowledged", "committed in"),
        # The response goes out before the write it reports on has happened.
        moved_before(ORDER_UPDATE, "response_before_query", "Response sent", "Query executed"),
        # Segments applied with no checksum verified, then the replica is promoted anyway.
        flow(
            "unverified_promotion",
            "INFO db | Replica {host} streaming from lsn {lsn}",
            "*3-5 INFO db | Replica {host} applied WAL segment {walseg}",
            "INFO db | Replica {host} promoted to primary at lsn {lsn}",
            "INFO order-service | Connecting to db at {ip2}:5432 pool=order-pool",
        ),
    ),
)

ANOMALY_FLOWS: dict[str, AnomalyFlows] = {
    "service_cascade_failure": _CASCADE,
    "authentication_failure": _AUTH,
    "resource_exhaustion": _RESOURCE,
    "network_timeout": _NETWORK,
    "data_corruption": _DATA,
}
