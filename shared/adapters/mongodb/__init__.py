"""The MongoDB store, on PyMongo's AsyncMongoClient.

Each transition is one `findOneAndUpdate` whose filter names the expected
state and whose update pipeline appends the transition's event, with a
snapshot of the code as changed, to the code's own outbox: the state change
and its event are committed together or not at all, without transactions.

One module per aggregate, each a mixin over `base.MongoBase` (`MongoCodes` in
`codes`, and so on); `store.MongoStore` composes them with the client's
lifecycle, `schema` holds the indexes and `codec` the update expressions the
aggregates share.
"""

from shared.adapters.mongodb.store import MongoStore

__all__ = ["MongoStore"]
