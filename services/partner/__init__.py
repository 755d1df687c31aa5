"""A fulfillment partner simulator: the other side of the AMQP and webhook transports."""
