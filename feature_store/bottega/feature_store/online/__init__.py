"""Online stores: the latest feature values per entity, read at prediction time.

`OnlineStore` is the contract; `SqliteOnlineStore` (embedded default) and `CassandraOnlineStore` implement it, and
one contract test suite runs against both.
"""
