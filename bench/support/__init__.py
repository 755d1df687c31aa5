"""The servers a run needs, and the services as OS processes: for the tests and the benches."""
