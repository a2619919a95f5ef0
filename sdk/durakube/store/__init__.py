"""The Postgres store: the only place Durakube touches the database.

Data modules, each a table: `runs`, `steps`, `attempts`; `schema` holds the whole
SQL schema and its migrations; `pools` opens connections. Call them as
`store.steps.load_steps(pool, run_id)`. Every public function takes a pool or a
connection (so callers compose several in one transaction) and delegates to a
private `_..._txn(conn, ...)`. Imports nothing above the store.
"""

from durakube.store import attempts, pools, retention, runs, schema, steps
from durakube.store.pools import connect
from durakube.store.schema import migrate

__all__ = ["attempts", "connect", "migrate", "pools", "retention", "runs", "schema", "steps"]
