"""What runs around a service's main job: settings, logging, health and metrics, the
adapters opened and closed, shutdown on a signal, failpoints and diagnostics."""
