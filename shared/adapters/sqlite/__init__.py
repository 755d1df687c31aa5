"""The embedded store: one SQLite file in WAL mode, for single-node and development use.

Same guarantees as the MongoDB store: each transition is one `BEGIN IMMEDIATE`
transaction that checks the expected state, writes the code and inserts its
events into the outbox table; uniqueness comes from constraints. Several
processes may share the file: SQLite's locks serialise their writes. In a
process, every statement runs on one thread that owns the connection
(`connection.ConnectionThread`), which gives the writes waiting for it one
commit. Commits are durable (`synchronous = FULL`) before anything is
acknowledged.

One module per aggregate, each a mixin over `base.SqliteBase`; `store.SqliteStore`
composes them. `schema` holds the file's tables and settings, `codec` how
documents are kept in rows.
"""

from shared.adapters.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
