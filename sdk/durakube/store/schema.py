"""The whole SQL schema of Durakube, as ordered, versioned migrations.

`migrate(db)` is called by the operator at start-up (and by tests and benchmarks);
it is idempotent and safe to run from several processes at once: every migrator
takes the same transaction-scoped advisory lock (`pg_advisory_xact_lock`, which
also works through PgBouncer in transaction mode), then applies, in one
transaction, the versions `durakube.schema_migrations` does not list yet.

Migrations are append-only: never edit a released one, add the next version.
Every index is named, so a later migration can drop or replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

from durakube.store import pools

SCHEMA = "durakube"

# An arbitrary constant shared by every migrator: bytes of "durakube" as an int64.
MIGRATION_LOCK_KEY = 0x64757261_6B756265


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, steps and attempts", """
        CREATE TABLE durakube.runs (
            run_id       text PRIMARY KEY,
            namespace    text NOT NULL,
            name         text NOT NULL,
            task_id      text NOT NULL,
            queue        text,
            payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
            status       text NOT NULL DEFAULT 'Pending',
            attempt      integer NOT NULL DEFAULT 0,
            state        jsonb NOT NULL DEFAULT '{}'::jsonb,
            output       jsonb,
            error        jsonb,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz
        );
        CREATE INDEX runs_status_idx ON durakube.runs (status);
        CREATE INDEX runs_namespace_name_idx ON durakube.runs (namespace, name);

        CREATE TABLE durakube.steps (
            run_id       text NOT NULL REFERENCES durakube.runs (run_id) ON DELETE CASCADE,
            seq          integer NOT NULL,
            name         text NOT NULL,
            status       text NOT NULL CHECK (status IN ('succeeded', 'failed')),
            result       jsonb,
            error        jsonb,
            state        jsonb NOT NULL DEFAULT '{}'::jsonb,
            attempt      integer NOT NULL,
            started_at   timestamptz NOT NULL,
            finished_at  timestamptz NOT NULL,
            duration_ms  double precision NOT NULL,
            CONSTRAINT steps_pkey PRIMARY KEY (run_id, seq)
        );

        CREATE TABLE durakube.attempts (
            run_id       text NOT NULL REFERENCES durakube.runs (run_id) ON DELETE CASCADE,
            attempt      integer NOT NULL,
            pod_name     text,
            outcome      text CHECK (outcome IN ('succeeded', 'failed', 'retry', 'suspended')),
            output       jsonb,
            error        jsonb,
            retry_at     timestamptz,
            started_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz,
            CONSTRAINT attempts_pkey PRIMARY KEY (run_id, attempt)
        );
    """),
    Migration(2, "waitpoints and queue slots", """
        CREATE TABLE durakube.waitpoints (
            run_id        text NOT NULL REFERENCES durakube.runs (run_id) ON DELETE CASCADE,
            seq           integer NOT NULL,
            kind          text NOT NULL,
            key           text,
            token         text,
            wake_at       timestamptz,
            data          jsonb,
            completed_at  timestamptz,
            CONSTRAINT waitpoints_pkey PRIMARY KEY (run_id, seq)
        );
        CREATE INDEX waitpoints_wake_at_idx ON durakube.waitpoints (wake_at)
            WHERE completed_at IS NULL;
        CREATE INDEX waitpoints_key_idx ON durakube.waitpoints (key)
            WHERE completed_at IS NULL;
        CREATE UNIQUE INDEX waitpoints_token_idx ON durakube.waitpoints (token);

        CREATE TABLE durakube.queue_slots (
            queue            text NOT NULL,
            run_id           text NOT NULL REFERENCES durakube.runs (run_id) ON DELETE CASCADE,
            concurrency_key  text,
            granted_at       timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT queue_slots_pkey PRIMARY KEY (run_id)
        );
        CREATE INDEX queue_slots_queue_idx ON durakube.queue_slots (queue, concurrency_key);
    """),
    Migration(3, "queues, their lines and per-key service", """
        CREATE TABLE durakube.queues (
            queue                      text PRIMARY KEY,
            concurrency_limit          integer NOT NULL CHECK (concurrency_limit >= 0),
            concurrency_limit_per_key  integer CHECK (concurrency_limit_per_key >= 1),
            paused                     boolean NOT NULL DEFAULT false,
            defined                    boolean NOT NULL DEFAULT false,
            updated_at                 timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE durakube.queue_waiting (
            run_id           text PRIMARY KEY REFERENCES durakube.runs (run_id) ON DELETE CASCADE,
            queue            text NOT NULL,
            namespace        text NOT NULL,
            name             text NOT NULL,
            concurrency_key  text NOT NULL DEFAULT '',
            priority         integer NOT NULL DEFAULT 0,
            created_at       timestamptz NOT NULL,
            enqueued_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX queue_waiting_order_idx
            ON durakube.queue_waiting (queue, priority DESC, created_at, run_id);

        CREATE TABLE durakube.queue_keys (
            queue             text NOT NULL,
            concurrency_key   text NOT NULL,
            last_admitted_at  timestamptz NOT NULL,
            CONSTRAINT queue_keys_pkey PRIMARY KEY (queue, concurrency_key)
        );

        ALTER TABLE durakube.queue_slots
            ADD COLUMN namespace text,
            ADD COLUMN name text,
            ALTER COLUMN concurrency_key SET DEFAULT '';
    """),
    Migration(4, "payloads kept by reference", """
        CREATE TABLE durakube.payloads (
            ref         text PRIMARY KEY,
            data        jsonb NOT NULL,
            bytes       integer NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
    """),
    Migration(5, "events, and waitpoints that time out and resume", """
        ALTER TABLE durakube.waitpoints
            ADD COLUMN timed_out boolean NOT NULL DEFAULT false,
            ADD COLUMN resumed_at timestamptz,
            ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
        CREATE INDEX waitpoints_to_resume_idx ON durakube.waitpoints (completed_at)
            WHERE completed_at IS NOT NULL AND resumed_at IS NULL;

        CREATE TABLE durakube.events (
            event_id        text PRIMARY KEY,
            key             text NOT NULL,
            data            jsonb,
            created_at      timestamptz NOT NULL DEFAULT now(),
            expires_at      timestamptz NOT NULL,
            delivered_to    integer NOT NULL DEFAULT 0,
            delivered_runs  text[],
            consumed_by     text,
            consumed_seq    integer,
            consumed_at     timestamptz
        );
        CREATE INDEX events_buffered_idx ON durakube.events (key, created_at)
            WHERE consumed_by IS NULL AND delivered_to = 0;
    """),
    Migration(6, "child runs a task triggers", """
        CREATE TABLE durakube.child_runs (
            parent_run_id  text NOT NULL REFERENCES durakube.runs (run_id) ON DELETE CASCADE,
            seq            integer NOT NULL,
            namespace      text NOT NULL,
            name           text NOT NULL,
            task           text NOT NULL,
            payload        jsonb NOT NULL,
            options        jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at     timestamptz NOT NULL DEFAULT now(),
            submitted_at   timestamptz,
            CONSTRAINT child_runs_pkey PRIMARY KEY (parent_run_id, seq)
        );
        CREATE INDEX child_runs_unsubmitted_idx ON durakube.child_runs (created_at)
            WHERE submitted_at IS NULL;
    """),
    Migration(7, "the retry policy an attempt's outcome was classified under", """
        ALTER TABLE durakube.attempts ADD COLUMN policy jsonb;
    """),
    # Touches only durakube.events, so it applies whatever version 8 changed.
    Migration(9, "events are sent within a namespace", """
        ALTER TABLE durakube.events ADD COLUMN namespace text;
        -- A child's result names its namespace in its key (durakube.io/run/<ns>/<name>).
        -- Other events buffered before namespaces existed cannot be attributed to one:
        -- they keep an empty namespace, which no run has, and expire unread.
        UPDATE durakube.events SET namespace = CASE
            WHEN key LIKE 'durakube.io/run/%/%' THEN split_part(key, '/', 3) ELSE '' END;
        ALTER TABLE durakube.events ALTER COLUMN namespace SET NOT NULL;
        DROP INDEX durakube.events_buffered_idx;
        CREATE INDEX events_buffered_idx ON durakube.events (namespace, key, created_at)
            WHERE consumed_by IS NULL AND delivered_to = 0;
    """),
)


async def migrate(db: pools.Database,
                  migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Applies the migrations not applied yet; returns their versions (empty when none)."""
    async with pools.transaction(db) as conn:
        return await _migrate_txn(conn, migrations)


async def _migrate_txn(conn: pools.Database, migrations: tuple[Migration, ...]) -> list[int]:
    # The lock comes first: even CREATE SCHEMA IF NOT EXISTS races without it.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    await conn.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )""")
    applied = {row["version"] for row in
               await conn.fetch(f"SELECT version FROM {SCHEMA}.schema_migrations")}
    done: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in applied:
            continue
        await conn.execute(migration.sql)
        await conn.execute(
            f"INSERT INTO {SCHEMA}.schema_migrations (version, name) VALUES ($1, $2)",
            migration.version, migration.name)
        done.append(migration.version)
    return done


async def applied_versions(db: pools.Database) -> list[int]:
    """The versions recorded in `schema_migrations`, ascending (empty before any)."""
    async with pools.connection(db) as conn:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                     f"{SCHEMA}.schema_migrations")
        if not exists:
            return []
        rows = await conn.fetch(f"SELECT version FROM {SCHEMA}.schema_migrations ORDER BY 1")
        return [row["version"] for row in rows]
