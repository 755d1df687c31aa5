"""Fulfillment handlers shipped with the service, registered as entry points, and the
simulated partner's behaviour (which the partner simulator process uses too)."""
