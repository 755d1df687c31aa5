"""The pure domain: no I/O libraries are imported below this package."""
