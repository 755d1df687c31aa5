"""Every name the services share: exchanges, queues, collections, indexes."""

from shared.domain.backoff import RetryPolicy

COMMANDS_EXCHANGE = "redemption.commands"
EVENTS_EXCHANGE = "redemption.events"
FULFILLMENT_EXCHANGE = "redemption.fulfillment"
DEAD_LETTER_EXCHANGE = "redemption.dead-letter"
DEAD_LETTER_QUEUE = "redemption.dead-letter"
# A stream beside the dead-letter queue, bound to the same exchange: a log of the dead
# letters that operators read without taking anything off the queue.
DEAD_LETTER_LOG = "redemption.dead-letter.log"
DEAD_LETTER_LOG_MAX_AGE = "7D"
DEAD_LETTER_LOG_MAX_BYTES = 100_000_000
# A reader's marker, published straight to the log (never through the dead-letter
# exchange) before it reads, so that it knows where the log ended: a uuid of its own.
DEAD_LETTER_LOG_MARKER_HEADER = "x-redemption-log-marker"
WORK_EXCHANGE = "redemption.work"

REDEEM_ROUTING_KEY = "redeem"
ASYNC_RESPONSE_ROUTING_KEY = "async-response"

INTAKE_QUEUE = "redemption.intake"
JOBS_QUEUE = "redemption.jobs"
JOB_ROUTING_KEY = "job"
WORK_QUEUE = "redemption.work"

# Header naming why a message was dead-lettered: "<reasonCode> <reasonName>: <message>".
DEAD_LETTER_REASON_HEADER = "x-redemption-reason"
DEAD_LETTER_REASON_CODE_HEADER = "x-redemption-reason-code"
# An AMQP command's API key, `Bearer <key>` as over HTTP; never kept in a copy the
# service publishes (a delayed retry, a dead letter).
AUTHORIZATION_HEADER = "authorization"
# A delayed copy names its command's key by the key's SHA-256 digest (hex) in its stead;
# believed only of a copy that comes back by the retry exchange.
KEY_DIGEST_HEADER = "x-redemption-key-digest"
# How many times a job whose redemption could not even be ended was put back to start over.
START_OVER_HEADER = "x-redemption-start-overs"

# Delayed retries. A consumer retries a message by publishing a copy to the delay
# exchange, routed by the name of the queue it came from and `DELAY_HEADER` naming a
# step; the step's delay queue holds it for its TTL (one TTL a queue, so that nothing
# waits behind a longer delay), then dead-letters it to the retry exchange, which routes
# it back to that queue by its name.
DELAY_EXCHANGE = "redemption.delay"  # headers exchange, on `DELAY_HEADER`
RETRY_EXCHANGE = "redemption.retry"  # direct exchange, routing key = the queue's name
RETRIED_QUEUES = (WORK_QUEUE, JOBS_QUEUE, INTAKE_QUEUE)
# The broker's retries: 0.5 s after the first delivery, doubling, at most 30 s.
BROKER_RETRY = RetryPolicy(initial=0.5, max=30.0, multiplier=2.0)
# The delays `BROKER_RETRY` gives, one delay queue each.
DELAY_STEPS_MS = (500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000)
# The step a copy is for; no "x-" prefix, which a headers exchange ignores.
DELAY_HEADER = "redemption-delay-ms"
# Deliveries a message had before this copy of it was published: a new publish starts
# the quorum queue's own count (`x-delivery-count`) again, so the copy carries the sum.
DELIVERIES_HEADER = "x-redemption-deliveries"
# Where a delayed copy was first published, since it comes back by the retry exchange.
ORIGINAL_EXCHANGE_HEADER = "x-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-original-routing-key"


def delay_queue(delay_ms: int) -> str:
    """The delay queue of one step of `DELAY_STEPS_MS`."""
    return f"redemption.delay.{delay_ms}ms"


CAMPAIGNS = "campaigns"
CODES = "codes"
INSTANCES = "instances"  # users' instances of shared codes
SHARED_CLAIMS = "shared_claims"  # which redemption holds a user's one claim of a shared code
REDEMPTIONS = "redemptions"
JOBS = "jobs"
DELETED_OUTBOXES = "deleted_outboxes"  # events of deleted codes still to be relayed
PLAIN_CODES = "plain_codes"  # a hashed campaign's generated codes until their one download
FAILURE_WINDOWS = "failure_windows"  # throttling: recent counted attempts per scope
PROFILES = "profiles"  # brainCloud front door: a game client's identity in an app
SESSIONS = "sessions"  # brainCloud front door: a client's or server's session, until it expires
