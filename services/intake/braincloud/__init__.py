"""A brainCloud-compatible front door: the client protocol (`/dispatcherv2`) and the
server-to-server protocol (`/s2sdispatcher`) of brainCloud's official libraries, over
the same service layer as the HTTP API. It claims nothing itself: a redemption goes
through the intake, RabbitMQ and a worker as any other does."""
