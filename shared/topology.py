"""Every name the services share: exchanges, queues, collections, indexes."""

COMMANDS_EXCHANGE = "redemption.commands"
EVENTS_EXCHANGE = "redemption.events"
FULFILLMENT_EXCHANGE = "redemption.fulfillment"
DEAD_LETTER_EXCHANGE = "redemption.dead-letter"
DEAD_LETTER_QUEUE = "redemption.dead-letter"
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
# How many times a job whose redemption could not even be ended was put back to start over.
START_OVER_HEADER = "x-redemption-start-overs"

CAMPAIGNS = "campaigns"
CODES = "codes"
INSTANCES = "instances"  # users' instances of shared codes
SHARED_CLAIMS = "shared_claims"  # which redemption holds a user's one claim of a shared code
REDEMPTIONS = "redemptions"
JOBS = "jobs"
DELETED_OUTBOXES = "deleted_outboxes"  # events of deleted codes still to be relayed
