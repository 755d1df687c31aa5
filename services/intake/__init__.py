"""The intake: RedeemCode and the admin API over HTTP, commands over AMQP."""
