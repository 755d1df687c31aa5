"""The service layer the services share: use cases over the ports."""
