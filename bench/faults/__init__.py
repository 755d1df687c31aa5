"""The fault-injection lab: a system under load and faults, judged from the outside."""
