"""Fulfillment handlers shipped with the service, registered as entry points."""
