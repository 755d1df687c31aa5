"""What the services' entrypoints share: the base of every queue consumer."""
