"""The whole SQL schema of Durakube, as ordered, versioned migrations.

`migrate(db)` is called by the operator at start-up (and by tests and benchmarks);
it is idempotent and safe to run from several processes at once: every migrator
takes the same transaction-scoped advisory lock (`pg_advisory_xact_lock`, which
also works through PgBouncer in transaction mode), then applies, in one
transaction, the versions `durakube.schema_migrations` does not list yet.

Migrations are append-only: never edit a released one, add the next version.
Every index is named, so a later migration can drop or replace it.

Who may do what (migration 9). Namespaces are tenants, and a task's code is not
trusted: it runs with whatever its pod can read. So three roles:

- the owner (the migrator's login) owns the schema and runs the DDL; nobody else
  needs it at run time;
- `durakube_operator` (a NOLOGIN group role: the operator's login is made a member)
  reads and writes the tables, and has no DDL;
- `durakube_worker` (the same, for the login given to attempt pods) has no right on
  any table or sequence and cannot create anything in the schema: it may only
  EXECUTE the `worker_*` functions (`WORKER_FUNCTIONS`).

Each worker function is SECURITY DEFINER (it runs as the owner, with a fixed
search_path) and takes (run_id, attempt, secret) first. `check_attempt` lets the
call through only when the secret's SHA-256 is the one the operator stored when it
started that attempt, the attempt is the run's current one, it has no outcome, and
the run is not finished; it locks the attempt's row, so the operator cannot end the
attempt between the check and the write. The secret is 256 random bits the
operator hands to that attempt's pod only (a key of an attempt key ring, migration 16,
`keyrings`); Postgres
keeps its hash only. Recording the outcome revokes it (the hash is cleared in the
same transaction); so do starting a newer attempt, the run leaving its pod or slot,
and the run finishing. A worker therefore reads and writes its own run's rows,
during its own attempt, and nothing else: not another run, not another attempt of
its own run (a zombie pod is fenced), not the queues or events of anyone.

Row-level security with a role per namespace would also isolate tenants, but needs
a role (and a credential) per namespace, made by whoever may create roles, and still
lets a worker write at any time; a per-attempt secret needs nothing per namespace
and fences zombies. The step checkpoint stays one round trip: `worker_record_step`
checks and inserts in one call.

Attempt logs (migration 11). What an attempt's process writes (its stdout and
stderr, so the task logger's records too) outlives its pod in
`attempt_logs` (one row per attempt: byte counts) and `attempt_log_chunks` (the
bytes, in order). The worker appends with `worker_append_log`, checked like every
worker function, so a task can append only to its own live attempt's log. The
bound is enforced there, in SQL: an attempt keeps the first `LOG_HEAD_BYTES` and
the last `LOG_TAIL_BYTES` of its output (1 MiB in all); the bytes in between are
dropped and only counted (`total_bytes` minus what is kept), so a reader can say
how much is missing and where. When a pod ends without an outcome, the operator
(which has the table rights) keeps the last `LOG_POD_TAIL_BYTES` of the pod's own
log in `pod_tail`, for what the worker could not store. Both tables' rows go with
the attempt's row, and so with the run's (ON DELETE CASCADE).
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


# The worker's functions (migration 9). Each is SECURITY DEFINER: it runs as the
# schema's owner, with a fixed search_path so that nothing the caller puts on its own
# path can stand in for a table or an operator. Each takes (run_id, attempt, secret)
# first and calls `check_attempt`, so one call is one authenticated round trip. None
# is executable by PUBLIC; durakube_worker may execute these and nothing else.
WORKER_FUNCTIONS: tuple[str, ...] = (
    "worker_start_attempt(text, integer, text, text)",
    "worker_load_steps(text, integer, text)",
    "worker_load_step(text, integer, text, integer)",
    "worker_record_step(text, integer, text, integer, text, text, jsonb, jsonb, jsonb,"
    " timestamptz, timestamptz, double precision)",
    "worker_record_outcome(text, integer, text, text, jsonb, jsonb, timestamptz, jsonb, jsonb,"
    " integer, text, text, jsonb, jsonb, jsonb, timestamptz, timestamptz, double precision)",
    "worker_load_waitpoint(text, integer, text, integer)",
    "worker_load_waitpoint_by_token(text, integer, text, text)",
    "worker_create_waitpoint(text, integer, text, integer, text, timestamptz, text)",
    "worker_wait_for_event(text, integer, text, integer, text, timestamptz)",
    "worker_request_child_run(text, integer, text, integer, text, jsonb, jsonb)",
)

WORKER_FUNCTIONS_SQL = """
    -- Raises insufficient_privilege unless `secret` is the live secret of attempt
    -- `attempt` of run `run_id`: not revoked (a newer attempt, the pod's end and the
    -- run's end revoke it) and no outcome yet. First takes the run's fence in shared
    -- mode until the caller's transaction ends: whoever revokes takes it exclusively,
    -- so no write slips in between this check and a revocation. An advisory lock, not
    -- a row lock: FOR SHARE would write the attempt's row at every step. Not
    -- executable by workers on its own.
    CREATE FUNCTION durakube.check_attempt(p_run_id text, p_attempt integer, p_secret text)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('durakube-attempt:' || p_run_id, 0));
        PERFORM 1 FROM durakube.attempts a
        WHERE a.run_id = p_run_id AND a.attempt = p_attempt AND a.outcome IS NULL
          AND a.secret_hash = sha256(convert_to(p_secret, 'UTF8'));
        IF NOT FOUND THEN
            RAISE EXCEPTION 'attempt % of run % is not live, or its secret is wrong',
                p_attempt, p_run_id USING ERRCODE = 'insufficient_privilege';
        END IF;
    END
    $fn$;

    CREATE FUNCTION durakube.worker_start_attempt(
        p_run_id text, p_attempt integer, p_secret text, p_pod_name text)
    RETURNS SETOF durakube.runs LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        UPDATE durakube.attempts SET pod_name = p_pod_name
        WHERE run_id = p_run_id AND attempt = p_attempt AND pod_name IS NULL;
        RETURN QUERY SELECT * FROM durakube.runs WHERE run_id = p_run_id;
    END
    $fn$;

    CREATE FUNCTION durakube.worker_load_steps(p_run_id text, p_attempt integer, p_secret text)
    RETURNS SETOF durakube.steps LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        RETURN QUERY SELECT * FROM durakube.steps WHERE run_id = p_run_id ORDER BY seq;
    END
    $fn$;

    CREATE FUNCTION durakube.worker_load_step(
        p_run_id text, p_attempt integer, p_secret text, p_seq integer)
    RETURNS SETOF durakube.steps LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        RETURN QUERY SELECT * FROM durakube.steps WHERE run_id = p_run_id AND seq = p_seq;
    END
    $fn$;

    -- The hot path: the check and the step's insert (with the run's state when it
    -- changed) in one call. False when the seq was recorded before: the first stands.
    CREATE FUNCTION durakube.worker_record_step(
        p_run_id text, p_attempt integer, p_secret text, p_seq integer, p_name text,
        p_status text, p_result jsonb, p_error jsonb, p_state jsonb,
        p_started_at timestamptz, p_finished_at timestamptz, p_duration_ms double precision)
    RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE
        inserted bigint;
    BEGIN
        -- check_attempt, inlined: a nested SECURITY DEFINER call costs a second
        -- search_path switch on the path every step takes.
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('durakube-attempt:' || p_run_id, 0));
        PERFORM 1 FROM durakube.attempts a
        WHERE a.run_id = p_run_id AND a.attempt = p_attempt AND a.outcome IS NULL
          AND a.secret_hash = sha256(convert_to(p_secret, 'UTF8'));
        IF NOT FOUND THEN
            RAISE EXCEPTION 'attempt % of run % is not live, or its secret is wrong',
                p_attempt, p_run_id USING ERRCODE = 'insufficient_privilege';
        END IF;
        WITH step AS (
            INSERT INTO durakube.steps (run_id, seq, name, status, result, error, state,
                                        attempt, started_at, finished_at, duration_ms)
            VALUES (p_run_id, p_seq, p_name, p_status, p_result, p_error, p_state,
                    p_attempt, p_started_at, p_finished_at, p_duration_ms)
            ON CONFLICT (run_id, seq) DO NOTHING
            RETURNING run_id, state
        ), run AS (
            UPDATE durakube.runs SET state = step.state, updated_at = now()
            FROM step
            WHERE runs.run_id = step.run_id AND runs.state IS DISTINCT FROM step.state
        )
        SELECT count(*) INTO inserted FROM step;
        RETURN inserted = 1;
    END
    $fn$;

    -- The attempt's outcome, with the failed step that ended it (when p_step_seq is
    -- set) and the run's state, output and error; the attempt's secret is revoked in
    -- the same transaction, so nothing more can be written with it.
    CREATE FUNCTION durakube.worker_record_outcome(
        p_run_id text, p_attempt integer, p_secret text, p_outcome text, p_output jsonb,
        p_error jsonb, p_retry_at timestamptz, p_policy jsonb, p_state jsonb,
        p_step_seq integer, p_step_name text, p_step_status text, p_step_result jsonb,
        p_step_error jsonb, p_step_state jsonb, p_step_started_at timestamptz,
        p_step_finished_at timestamptz, p_step_duration_ms double precision)
    RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE
        step_state jsonb;
    BEGIN
        -- As check_attempt, but holding the run's fence exclusively: recording the
        -- outcome revokes the secret.
        PERFORM pg_advisory_xact_lock(hashtextextended('durakube-attempt:' || p_run_id, 0));
        PERFORM 1 FROM durakube.attempts a
        WHERE a.run_id = p_run_id AND a.attempt = p_attempt AND a.outcome IS NULL
          AND a.secret_hash = sha256(convert_to(p_secret, 'UTF8'))
        FOR UPDATE OF a;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'attempt % of run % is not live, or its secret is wrong',
                p_attempt, p_run_id USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF p_step_seq IS NOT NULL THEN
            INSERT INTO durakube.steps (run_id, seq, name, status, result, error, state,
                                        attempt, started_at, finished_at, duration_ms)
            VALUES (p_run_id, p_step_seq, p_step_name, p_step_status, p_step_result,
                    p_step_error, p_step_state, p_attempt, p_step_started_at,
                    p_step_finished_at, p_step_duration_ms)
            ON CONFLICT (run_id, seq) DO NOTHING
            RETURNING state INTO step_state;
        END IF;
        UPDATE durakube.attempts
        SET outcome = p_outcome, output = p_output, error = p_error, retry_at = p_retry_at,
            policy = p_policy, finished_at = now(), secret_hash = NULL
        WHERE run_id = p_run_id AND attempt = p_attempt;
        UPDATE durakube.runs
        SET state = coalesce(p_state, step_state, state),
            output = CASE WHEN p_outcome = 'succeeded' THEN p_output ELSE output END,
            error = CASE WHEN p_outcome = 'succeeded' THEN NULL
                         ELSE coalesce(p_error, error) END,
            updated_at = now()
        WHERE run_id = p_run_id;
        RETURN true;
    END
    $fn$;

    CREATE FUNCTION durakube.worker_load_waitpoint(
        p_run_id text, p_attempt integer, p_secret text, p_seq integer)
    RETURNS SETOF durakube.waitpoints LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        RETURN QUERY SELECT * FROM durakube.waitpoints WHERE run_id = p_run_id AND seq = p_seq;
    END
    $fn$;

    -- Only the run's own waitpoints: a token of another run finds nothing.
    CREATE FUNCTION durakube.worker_load_waitpoint_by_token(
        p_run_id text, p_attempt integer, p_secret text, p_token text)
    RETURNS SETOF durakube.waitpoints LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        RETURN QUERY SELECT * FROM durakube.waitpoints
                     WHERE token = p_token AND run_id = p_run_id;
    END
    $fn$;

    -- A sleep or a token wait (an event wait goes through worker_wait_for_event).
    CREATE FUNCTION durakube.worker_create_waitpoint(
        p_run_id text, p_attempt integer, p_secret text, p_seq integer, p_kind text,
        p_wake_at timestamptz, p_token text)
    RETURNS SETOF durakube.waitpoints LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        IF p_kind NOT IN ('sleep', 'token') OR (p_kind = 'token') <> (p_token IS NOT NULL) THEN
            RAISE EXCEPTION 'a worker creates a sleep, or a token wait with its token'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO durakube.waitpoints (run_id, seq, kind, token, wake_at)
        VALUES (p_run_id, p_seq, p_kind, p_token, p_wake_at)
        ON CONFLICT (run_id, seq) DO NOTHING;
        RETURN QUERY SELECT * FROM durakube.waitpoints WHERE run_id = p_run_id AND seq = p_seq;
    END
    $fn$;

    -- Starts waiting on `p_key`, taking the oldest buffered event if there is one;
    -- the per-key advisory lock makes this exclusive with sending an event.
    CREATE FUNCTION durakube.worker_wait_for_event(
        p_run_id text, p_attempt integer, p_secret text, p_seq integer, p_key text,
        p_wake_at timestamptz)
    RETURNS SETOF durakube.waitpoints LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE
        buffered jsonb;
        found_event boolean;
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        PERFORM pg_advisory_xact_lock(hashtextextended('durakube-event:' || p_key, 0));
        IF NOT EXISTS (SELECT FROM durakube.waitpoints
                       WHERE run_id = p_run_id AND seq = p_seq) THEN
            UPDATE durakube.events SET consumed_by = p_run_id, consumed_seq = p_seq,
                                       consumed_at = now()
            WHERE event_id = (
                SELECT event_id FROM durakube.events
                WHERE key = p_key AND consumed_by IS NULL AND delivered_to = 0
                  AND expires_at > now()
                  AND namespace = (SELECT namespace FROM durakube.runs WHERE run_id = p_run_id)
                ORDER BY created_at LIMIT 1 FOR UPDATE)
            RETURNING data INTO buffered;
            found_event := FOUND;
            INSERT INTO durakube.waitpoints (run_id, seq, kind, key, wake_at)
            VALUES (p_run_id, p_seq, 'event', p_key, p_wake_at);
            IF found_event THEN
                UPDATE durakube.waitpoints SET data = buffered, completed_at = now()
                WHERE run_id = p_run_id AND seq = p_seq;
            END IF;
        END IF;
        RETURN QUERY SELECT * FROM durakube.waitpoints WHERE run_id = p_run_id AND seq = p_seq;
    END
    $fn$;

    -- A child run, asked for by the attempt that stamps it; the operator creates the
    -- TaskRun, in the namespace of the parent's TaskRun as the API server has it.
    -- The child's name is `<parent>-c<seq>`, as `store.children.child_name` makes it.
    CREATE FUNCTION durakube.worker_request_child_run(
        p_run_id text, p_attempt integer, p_secret text, p_seq integer, p_task text,
        p_payload jsonb, p_options jsonb)
    RETURNS TABLE (child_namespace text, child_name text) LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE
        parent durakube.runs%ROWTYPE;
        wanted text;
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        SELECT * INTO parent FROM durakube.runs WHERE run_id = p_run_id;
        wanted := parent.name || '-c' || p_seq;
        IF length(wanted) > 253 THEN
            wanted := left(parent.name, 233) || '-'
                      || left(encode(sha256(convert_to(parent.name, 'UTF8')), 'hex'), 8)
                      || '-c' || p_seq;
        END IF;
        INSERT INTO durakube.child_runs (parent_run_id, seq, namespace, name, task, payload,
                                         options, parent_attempt)
        VALUES (p_run_id, p_seq, parent.namespace, wanted, p_task, p_payload,
                coalesce(p_options, '{}'::jsonb), p_attempt)
        ON CONFLICT (parent_run_id, seq) DO NOTHING;
        RETURN QUERY SELECT c.namespace, c.name FROM durakube.child_runs c
                     WHERE c.parent_run_id = p_run_id AND c.seq = p_seq;
    END
    $fn$;

    REVOKE ALL ON FUNCTION durakube.check_attempt(text, integer, text) FROM PUBLIC;
""" + "".join(f"""
    REVOKE ALL ON FUNCTION durakube.{signature} FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION durakube.{signature} TO durakube_worker;""" for signature in WORKER_FUNCTIONS)


# An attempt's stored log (migration 11): its first and last bytes, 1 MiB in all. The
# numbers are written into the SQL of that migration: changing them needs a new one.
LOG_HEAD_BYTES = 512 * 1024
LOG_TAIL_BYTES = 512 * 1024
# The most of a failed pod's own log the operator keeps with the attempt's.
LOG_POD_TAIL_BYTES = 64 * 1024
# Consecutive appends grow the last chunk up to this size rather than add a row each.
LOG_CHUNK_BYTES = 64 * 1024

# The worker functions of later migrations, executable by durakube_worker too.
LOG_WORKER_FUNCTIONS: tuple[str, ...] = (
    "worker_append_log(text, integer, text, bytea)",
)

ATTEMPT_LOGS_SQL = f"""
    CREATE TABLE durakube.attempt_logs (
        run_id       text NOT NULL,
        attempt      integer NOT NULL,
        -- Bytes kept from the start, kept from the end, and ever appended.
        head_bytes   integer NOT NULL DEFAULT 0,
        tail_bytes   integer NOT NULL DEFAULT 0,
        total_bytes  bigint NOT NULL DEFAULT 0,
        next_chunk   integer NOT NULL DEFAULT 1,
        -- The end of the pod's own log, which the operator reads when the pod ended
        -- without an outcome (crashed, OOM-killed, past its deadline): the output its
        -- worker may have had no time to store.
        pod_tail     bytea CHECK (octet_length(pod_tail) <= {LOG_POD_TAIL_BYTES}),
        updated_at   timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT attempt_logs_pkey PRIMARY KEY (run_id, attempt),
        CONSTRAINT attempt_logs_attempt_fkey FOREIGN KEY (run_id, attempt)
            REFERENCES durakube.attempts (run_id, attempt) ON DELETE CASCADE
    );

    CREATE TABLE durakube.attempt_log_chunks (
        run_id   text NOT NULL,
        attempt  integer NOT NULL,
        chunk    integer NOT NULL,
        part     text NOT NULL CHECK (part IN ('head', 'tail')),
        data     bytea NOT NULL,
        CONSTRAINT attempt_log_chunks_pkey PRIMARY KEY (run_id, attempt, chunk),
        CONSTRAINT attempt_log_chunks_log_fkey FOREIGN KEY (run_id, attempt)
            REFERENCES durakube.attempt_logs (run_id, attempt) ON DELETE CASCADE
    );

    -- Appends `p_chunk` to the log of the caller's live attempt, keeping its first
    -- {LOG_HEAD_BYTES} and last {LOG_TAIL_BYTES} bytes: once the head is full, what
    -- comes goes to the tail, whose oldest bytes are dropped past its size. Returns the
    -- bytes ever appended. Not on the step's hot path: the worker ships its output from
    -- a task of its own, on a connection of its own.
    CREATE FUNCTION durakube.worker_append_log(
        p_run_id text, p_attempt integer, p_secret text, p_chunk bytea)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE
        log durakube.attempt_logs%ROWTYPE;
        rest bytea := coalesce(p_chunk, ''::bytea);
        piece bytea;
        room integer;
        part text;
        excess integer;
        oldest record;
        newest record;
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        INSERT INTO durakube.attempt_logs (run_id, attempt) VALUES (p_run_id, p_attempt)
        ON CONFLICT (run_id, attempt) DO NOTHING;
        SELECT * INTO log FROM durakube.attempt_logs
        WHERE run_id = p_run_id AND attempt = p_attempt FOR UPDATE;
        IF length(rest) = 0 THEN
            RETURN log.total_bytes;
        END IF;
        log.total_bytes := log.total_bytes + length(rest);
        -- At most two turns: the head's room first, then the tail.
        WHILE length(rest) > 0 LOOP
            room := {LOG_HEAD_BYTES} - log.head_bytes;
            part := CASE WHEN room > 0 THEN 'head' ELSE 'tail' END;
            IF room > 0 THEN
                piece := substring(rest FROM 1 FOR room);
                rest := substring(rest FROM room + 1);
                log.head_bytes := log.head_bytes + length(piece);
            ELSE
                -- Only the tail's last bytes can be kept.
                piece := substring(rest FROM greatest(1, length(rest) - {LOG_TAIL_BYTES} + 1));
                rest := ''::bytea;
                log.tail_bytes := log.tail_bytes + length(piece);
            END IF;
            SELECT c.chunk, c.part, length(c.data) AS bytes INTO newest
            FROM durakube.attempt_log_chunks c
            WHERE c.run_id = p_run_id AND c.attempt = p_attempt AND c.chunk = log.next_chunk - 1;
            IF FOUND AND newest.part = part AND newest.bytes + length(piece) <= {LOG_CHUNK_BYTES} THEN
                UPDATE durakube.attempt_log_chunks SET data = data || piece
                WHERE run_id = p_run_id AND attempt = p_attempt AND chunk = newest.chunk;
            ELSE
                INSERT INTO durakube.attempt_log_chunks (run_id, attempt, chunk, part, data)
                VALUES (p_run_id, p_attempt, log.next_chunk, part, piece);
                log.next_chunk := log.next_chunk + 1;
            END IF;
        END LOOP;
        -- The tail keeps its newest bytes: drop whole chunks from its start, then cut one.
        WHILE log.tail_bytes > {LOG_TAIL_BYTES} LOOP
            excess := log.tail_bytes - {LOG_TAIL_BYTES};
            SELECT c.chunk, length(c.data) AS bytes INTO oldest
            FROM durakube.attempt_log_chunks c
            WHERE c.run_id = p_run_id AND c.attempt = p_attempt AND c.part = 'tail'
            ORDER BY c.chunk LIMIT 1;
            IF oldest.bytes <= excess THEN
                DELETE FROM durakube.attempt_log_chunks
                WHERE run_id = p_run_id AND attempt = p_attempt AND chunk = oldest.chunk;
                log.tail_bytes := log.tail_bytes - oldest.bytes;
            ELSE
                UPDATE durakube.attempt_log_chunks SET data = substring(data FROM excess + 1)
                WHERE run_id = p_run_id AND attempt = p_attempt AND chunk = oldest.chunk;
                log.tail_bytes := {LOG_TAIL_BYTES};
            END IF;
        END LOOP;
        UPDATE durakube.attempt_logs
        SET head_bytes = log.head_bytes, tail_bytes = log.tail_bytes,
            total_bytes = log.total_bytes, next_chunk = log.next_chunk, updated_at = now()
        WHERE run_id = p_run_id AND attempt = p_attempt;
        RETURN log.total_bytes;
    END
    $fn$;
""" + "".join(f"""
    REVOKE ALL ON FUNCTION durakube.{signature} FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION durakube.{signature} TO durakube_worker;"""
              for signature in LOG_WORKER_FUNCTIONS)


# The worker functions of compensations (migration 19), executable by durakube_worker too.
COMPENSATION_WORKER_FUNCTIONS: tuple[str, ...] = (
    "worker_record_compensation(text, integer, text, integer, integer, text, jsonb)",
    "worker_load_compensations(text, integer, text)",
    "worker_finish_compensation(text, integer, text, integer, integer, jsonb)",
    "worker_end_compensating(text, integer, text, text, jsonb, jsonb)",
)

# Compensations (migration 19). A step that completed may register its undo: the
# function's import name and JSON arguments, keyed by (run, step seq, position within
# the step), recorded by the attempt that ran or replayed the step (a replay records it
# again: the first record stands). When the run fails for good the operator starts
# attempts in compensation mode; their worker loads the pending ones, newest first,
# and checkpoints each as it finishes (`worker_finish_compensation`), so a finished
# compensation never runs again; `worker_end_compensating` ends such an attempt
# without touching the run's output or error (the run keeps its original error).
COMPENSATIONS_SQL = """
    CREATE TABLE durakube.compensations (
        run_id             text NOT NULL REFERENCES durakube.runs (run_id) ON DELETE CASCADE,
        step_seq           integer NOT NULL,
        position           integer NOT NULL,
        name               text NOT NULL,
        args               jsonb NOT NULL,
        recorded_attempt   integer NOT NULL,
        status             text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'completed')),
        tries              integer NOT NULL DEFAULT 0,
        error              jsonb,
        completed_attempt  integer,
        recorded_at        timestamptz NOT NULL DEFAULT now(),
        finished_at        timestamptz,
        CONSTRAINT compensations_pkey PRIMARY KEY (run_id, step_seq, position)
    );

    -- Only a step recorded as succeeded may have an undo.
    CREATE FUNCTION durakube.worker_record_compensation(
        p_run_id text, p_attempt integer, p_secret text, p_step_seq integer,
        p_position integer, p_name text, p_args jsonb)
    RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        IF NOT EXISTS (SELECT FROM durakube.steps
                       WHERE run_id = p_run_id AND seq = p_step_seq AND status = 'succeeded') THEN
            RAISE EXCEPTION 'step % of run % has not completed: only a completed step has '
                'a compensation', p_step_seq, p_run_id USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO durakube.compensations (run_id, step_seq, position, name, args,
                                            recorded_attempt)
        VALUES (p_run_id, p_step_seq, p_position, p_name, p_args, p_attempt)
        ON CONFLICT (run_id, step_seq, position) DO NOTHING;
        RETURN FOUND;
    END
    $fn$;

    -- Newest first: the order compensations run in.
    CREATE FUNCTION durakube.worker_load_compensations(
        p_run_id text, p_attempt integer, p_secret text)
    RETURNS SETOF durakube.compensations LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        RETURN QUERY SELECT * FROM durakube.compensations WHERE run_id = p_run_id
                     ORDER BY step_seq DESC, position DESC;
    END
    $fn$;

    -- A compensation's checkpoint: completed (p_error NULL) or one more failed try.
    -- False when it was completed before (the first completion stands).
    CREATE FUNCTION durakube.worker_finish_compensation(
        p_run_id text, p_attempt integer, p_secret text, p_step_seq integer,
        p_position integer, p_error jsonb)
    RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        UPDATE durakube.compensations
        SET tries = tries + 1, error = coalesce(p_error, error),
            status = CASE WHEN p_error IS NULL THEN 'completed' ELSE 'pending' END,
            completed_attempt = CASE WHEN p_error IS NULL THEN p_attempt END,
            finished_at = CASE WHEN p_error IS NULL THEN now() END
        WHERE run_id = p_run_id AND step_seq = p_step_seq AND position = p_position
          AND status = 'pending';
        RETURN FOUND;
    END
    $fn$;

    -- The outcome of an attempt in compensation mode, 'succeeded' (none pending) or
    -- 'retry'; the secret is revoked as by worker_record_outcome, and the run's row
    -- (its output, error and state) is left as the failed run had it.
    CREATE FUNCTION durakube.worker_end_compensating(
        p_run_id text, p_attempt integer, p_secret text, p_outcome text, p_output jsonb,
        p_error jsonb)
    RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('durakube-attempt:' || p_run_id, 0));
        PERFORM 1 FROM durakube.attempts a
        WHERE a.run_id = p_run_id AND a.attempt = p_attempt AND a.outcome IS NULL
          AND a.secret_hash = sha256(convert_to(p_secret, 'UTF8'))
        FOR UPDATE OF a;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'attempt % of run % is not live, or its secret is wrong',
                p_attempt, p_run_id USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF p_outcome NOT IN ('succeeded', 'retry') THEN
            RAISE EXCEPTION 'an attempt in compensation mode ends succeeded or retry'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        UPDATE durakube.attempts
        SET outcome = p_outcome, output = p_output, error = p_error, finished_at = now(),
            secret_hash = NULL
        WHERE run_id = p_run_id AND attempt = p_attempt;
        RETURN true;
    END
    $fn$;
""" + "".join(f"""
    REVOKE ALL ON FUNCTION durakube.{signature} FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION durakube.{signature} TO durakube_worker;"""
              for signature in COMPENSATION_WORKER_FUNCTIONS)


# What a run's metadata may weigh, as JSON text (`ctx.update_metadata`).
METADATA_BYTES = 4096

# The worker functions of migration 20, executable by durakube_worker too.
METADATA_WORKER_FUNCTIONS: tuple[str, ...] = (
    "worker_load_metadata(text, integer, text)",
    "worker_update_metadata(text, integer, text, jsonb)",
)

METADATA_SQL = f"""
    -- A run's metadata: a small JSON object its task updates as it runs (progress, the
    -- item being worked on), mirrored to the TaskRun's status. A table of its own, not a
    -- column of runs (see migration 12).
    CREATE TABLE durakube.run_metadata (
        run_id      text PRIMARY KEY,
        metadata    jsonb NOT NULL DEFAULT '{{}}'::jsonb
                    CHECK (octet_length(metadata::text) <= {METADATA_BYTES}),
        updated_at  timestamptz NOT NULL DEFAULT now()
    );

    CREATE FUNCTION durakube.worker_load_metadata(p_run_id text, p_attempt integer, p_secret text)
    RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        RETURN coalesce((SELECT metadata FROM durakube.run_metadata WHERE run_id = p_run_id),
                        '{{}}'::jsonb);
    END
    $fn$;

    -- Merges `p_patch` (an object) into the run's metadata, a key set to JSON null
    -- removing that key; returns the result. Refused past {METADATA_BYTES} bytes.
    CREATE FUNCTION durakube.worker_update_metadata(
        p_run_id text, p_attempt integer, p_secret text, p_patch jsonb)
    RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$
    DECLARE
        merged jsonb;
    BEGIN
        PERFORM durakube.check_attempt(p_run_id, p_attempt, p_secret);
        IF jsonb_typeof(p_patch) <> 'object' THEN
            RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT (coalesce(m.metadata, '{{}}'::jsonb) || p_patch)
               - coalesce(ARRAY(SELECT e.key FROM jsonb_each(p_patch) e
                                WHERE e.value = 'null'::jsonb), ARRAY[]::text[])
        INTO merged
        FROM (SELECT 1) one
        LEFT JOIN durakube.run_metadata m ON m.run_id = p_run_id;
        IF octet_length(merged::text) > {METADATA_BYTES} THEN
            RAISE EXCEPTION 'the metadata of run % would be % bytes, over the limit of {METADATA_BYTES}',
                p_run_id, octet_length(merged::text) USING ERRCODE = 'program_limit_exceeded';
        END IF;
        INSERT INTO durakube.run_metadata (run_id, metadata) VALUES (p_run_id, merged)
        ON CONFLICT (run_id) DO UPDATE SET metadata = EXCLUDED.metadata, updated_at = now();
        RETURN merged;
    END
    $fn$;
""" + "".join(f"""
    REVOKE ALL ON FUNCTION durakube.{signature} FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION durakube.{signature} TO durakube_worker;"""
              for signature in METADATA_WORKER_FUNCTIONS)


# The functions the operator may call (it runs them with its own rights).
OPERATOR_FUNCTIONS = ("operator_start_attempt(text, integer, text, text, bytea, text)",
                      "operator_join_queue(text, text, text, text, text, integer, timestamptz, "
                      "integer, text, jsonb)")

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
    Migration(8, "events are sent within a namespace", """
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
    Migration(9, "roles, attempt secrets and the worker's functions", """
        ALTER TABLE durakube.attempts ADD COLUMN secret_hash bytea;
        ALTER TABLE durakube.child_runs
            ADD COLUMN parent_attempt integer,
            ADD COLUMN rejected text;

        -- Group roles; a deployment makes login roles members of them. Roles belong to
        -- the whole server, so another database (or an administrator) may have made
        -- them already, perhaps at this very moment.
        DO $roles$
        DECLARE
            role text;
        BEGIN
            FOREACH role IN ARRAY ARRAY['durakube_operator', 'durakube_worker'] LOOP
                IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role) THEN
                    BEGIN
                        EXECUTE format('CREATE ROLE %I NOLOGIN', role);
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN
                        NULL;
                    END;
                END IF;
            END LOOP;
        END
        $roles$;

        GRANT USAGE ON SCHEMA durakube TO durakube_operator, durakube_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA durakube
            TO durakube_operator;
        REVOKE INSERT, UPDATE, DELETE ON durakube.schema_migrations FROM durakube_operator;
        -- Tables of later migrations, created by the same owner, get the same grant.
        ALTER DEFAULT PRIVILEGES IN SCHEMA durakube
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO durakube_operator;
    """ + WORKER_FUNCTIONS_SQL),
    Migration(10, "a step checkpoint writes the step's row and nothing else", """
        -- The run's state lives in its latest step's row (and in the run's row from the
        -- attempt's end on): rewriting the run's row at every step doubled the write.
        -- No foreign key from steps to runs either: its check locked the run's row at
        -- every step. The only writers of steps, worker_record_step and
        -- worker_record_outcome, first check the live attempt, whose row references
        -- the run; runs are never deleted while they have steps.
        ALTER TABLE durakube.steps DROP CONSTRAINT steps_run_id_fkey;

        CREATE OR REPLACE FUNCTION durakube.worker_record_step(
            p_run_id text, p_attempt integer, p_secret text, p_seq integer, p_name text,
            p_status text, p_result jsonb, p_error jsonb, p_state jsonb,
            p_started_at timestamptz, p_finished_at timestamptz, p_duration_ms double precision)
        RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp AS $fn$
        BEGIN
            -- check_attempt, inlined: a nested SECURITY DEFINER call costs a second
            -- search_path switch on the path every step takes. The fence and the check
            -- stay two statements: the check must see a revocation committed while this
            -- call waited for the fence, and a statement sees what was committed when
            -- it began.
            PERFORM pg_advisory_xact_lock_shared(
                hashtextextended('durakube-attempt:' || p_run_id, 0));
            PERFORM 1 FROM durakube.attempts a
            WHERE a.run_id = p_run_id AND a.attempt = p_attempt AND a.outcome IS NULL
              AND a.secret_hash = sha256(convert_to(p_secret, 'UTF8'));
            IF NOT FOUND THEN
                RAISE EXCEPTION 'attempt % of run % is not live, or its secret is wrong',
                    p_attempt, p_run_id USING ERRCODE = 'insufficient_privilege';
            END IF;
            -- The first record of a seq stands: false for a second one.
            INSERT INTO durakube.steps (run_id, seq, name, status, result, error, state,
                                        attempt, started_at, finished_at, duration_ms)
            VALUES (p_run_id, p_seq, p_name, p_status, p_result, p_error, p_state,
                    p_attempt, p_started_at, p_finished_at, p_duration_ms)
            ON CONFLICT (run_id, seq) DO NOTHING;
            RETURN FOUND;
        END
        $fn$;
    """),
    Migration(11, "attempt logs that outlive their pods", ATTEMPT_LOGS_SQL),
    Migration(12, "retention: when finished TaskRuns and their history expire", """
        -- One row per finished run (or per run whose TaskRun was deleted): when its
        -- TaskRun expires (NULL: kept), when the operator saw it gone, and when the
        -- run's history may be removed (NULL: kept). A table of its own, not columns of
        -- runs: worker_start_attempt returns a runs row, and workers of images built
        -- before a new column would refuse a row they do not know. No foreign key: a
        -- run that never ran (refused before registration) has a TaskRun to expire too.
        -- The pod of the run's last attempt may go sooner than the TaskRun (pod_expires_at,
        -- cleared once deleted).
        CREATE TABLE durakube.run_retention (
            run_id              text PRIMARY KEY,
            namespace           text NOT NULL,
            name                text NOT NULL,
            finished_at         timestamptz,
            taskrun_expires_at  timestamptz,
            taskrun_gone_at     timestamptz,
            history_expires_at  timestamptz,
            pod_name            text,
            pod_expires_at      timestamptz
        );
        -- The bounded scans of the operator's retention loop.
        CREATE INDEX run_retention_taskrun_due_idx
            ON durakube.run_retention (taskrun_expires_at)
            WHERE taskrun_expires_at IS NOT NULL AND taskrun_gone_at IS NULL;
        CREATE INDEX run_retention_pod_due_idx ON durakube.run_retention (pod_expires_at)
            WHERE pod_expires_at IS NOT NULL;
        CREATE INDEX run_retention_history_due_idx
            ON durakube.run_retention (history_expires_at)
            WHERE history_expires_at IS NOT NULL AND taskrun_gone_at IS NOT NULL;
        -- History that belongs to no run, removed by age.
        CREATE INDEX events_expires_at_idx ON durakube.events (expires_at);
        CREATE INDEX payloads_created_at_idx ON durakube.payloads (created_at);
        CREATE INDEX queue_keys_last_admitted_at_idx ON durakube.queue_keys (last_admitted_at);
    """),
    Migration(16, "attempt key rings", """
        -- Attempt secrets handed out from rings: one Secret per ring in a namespace holds
        -- RING_SIZE single-use keys and the workers' DSN; Postgres keeps the keys' hashes
        -- and which attempt claimed each. A ring is claimable once its Secret exists
        -- (ready); the DSN's hash says which login its Secret hands out.
        CREATE TABLE durakube.attempt_key_rings (
            namespace   text NOT NULL,
            name        text NOT NULL,
            dsn_hash    bytea NOT NULL,
            ready       boolean NOT NULL DEFAULT false,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (namespace, name)
        );
        CREATE TABLE durakube.attempt_keys (
            namespace    text NOT NULL,
            ring         text NOT NULL,
            slot         integer NOT NULL,
            secret_hash  bytea NOT NULL,
            run_id       text,
            attempt      integer,
            PRIMARY KEY (namespace, ring, slot),
            FOREIGN KEY (namespace, ring) REFERENCES durakube.attempt_key_rings ON DELETE CASCADE
        );
        -- One key per attempt, ever; and the free keys of a namespace, in order.
        CREATE UNIQUE INDEX attempt_keys_claim_idx ON durakube.attempt_keys (run_id, attempt)
            WHERE run_id IS NOT NULL;
        CREATE INDEX attempt_keys_free_idx ON durakube.attempt_keys (namespace, ring, slot)
            WHERE run_id IS NULL;
    """),
    Migration(19, "compensations of completed steps (sagas)", COMPENSATIONS_SQL),
    Migration(20, "run metadata", METADATA_SQL),
    Migration(21, "debounced runs", """
        -- The runs that gave spec.debounce, in the order their TaskRuns were created:
        -- creationTimestamp (whole seconds), then the resourceVersion the TaskRun was
        -- created with (etcd's revision, which orders creations within a second), then
        -- the registration's time. A run due to start gives way to any created after it
        -- with the same Task and key.
        CREATE TABLE durakube.run_debounce (
            run_id            text PRIMARY KEY,
            namespace         text NOT NULL,
            task              text NOT NULL,
            key               text NOT NULL,
            created_at        timestamptz NOT NULL,
            created_version   numeric,
            registered_at     timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX run_debounce_key_idx ON durakube.run_debounce (namespace, task, key);
    """),
    Migration(22, "queue rate limits", """
        -- A TaskQueue's rate limits (spec.rateLimit, spec.rateLimitPerKey): at most
        -- *_starts admissions in any *_seconds.
        ALTER TABLE durakube.queues
            ADD COLUMN rate_starts          integer CHECK (rate_starts >= 1),
            ADD COLUMN rate_seconds         double precision CHECK (rate_seconds > 0),
            ADD COLUMN key_rate_starts      integer CHECK (key_rate_starts >= 1),
            ADD COLUMN key_rate_seconds     double precision CHECK (key_rate_seconds > 0);
        -- The admissions of rate-limited queues, kept for their longest period: what the
        -- sliding windows count. Written in the transaction that grants the slots.
        CREATE TABLE durakube.queue_admissions (
            queue            text NOT NULL,
            concurrency_key  text NOT NULL,
            run_id           text NOT NULL,
            admitted_at      timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX queue_admissions_window_idx
            ON durakube.queue_admissions (queue, admitted_at);
    """),
    Migration(23, "run tags", """
        -- A run's tags (its TaskRun's durakube.io/tag-* labels), recorded at its
        -- registration: the history lists runs by tag once their TaskRuns are gone.
        CREATE TABLE durakube.run_tags (
            run_id  text NOT NULL,
            tag     text NOT NULL,
            PRIMARY KEY (run_id, tag)
        );
        CREATE INDEX run_tags_tag_idx ON durakube.run_tags (tag);
    """),
    Migration(24, "an attempt starts in one call", """
        -- What starting an attempt writes, in one statement of the operator instead of
        -- seven (BEGIN, claim, fence, insert, two updates, COMMIT): the key the attempt
        -- claimed before, else the first free key of the namespace's ready rings for the
        -- workers' login (`keyrings`); then, holding the run's fence, the attempt's row
        -- with that key's hash as its credential (kept once the attempt ended), the run's
        -- attempt and phase, and the earlier attempts' credentials revoked. No row when
        -- no key is free: the attempt's row is there without a credential.
        CREATE FUNCTION durakube.operator_start_attempt(
            p_run_id text, p_attempt integer, p_pod_name text, p_namespace text,
            p_dsn_hash bytea, p_phase text)
        RETURNS TABLE (key_ring text, key_slot integer, claimed_now boolean)
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
        DECLARE
            v_ring text;
            v_slot integer;
            v_hash bytea;
            v_claimed boolean := false;
        BEGIN
            SELECT k.ring, k.slot, k.secret_hash INTO v_ring, v_slot, v_hash
            FROM durakube.attempt_keys k WHERE k.run_id = p_run_id AND k.attempt = p_attempt;
            IF NOT FOUND THEN
                UPDATE durakube.attempt_keys k SET run_id = p_run_id, attempt = p_attempt
                WHERE (k.namespace, k.ring, k.slot) = (
                    SELECT f.namespace, f.ring, f.slot
                    FROM durakube.attempt_keys f
                    JOIN durakube.attempt_key_rings r ON (r.namespace, r.name) = (f.namespace, f.ring)
                    WHERE f.namespace = p_namespace AND f.run_id IS NULL AND r.ready
                      AND r.dsn_hash = p_dsn_hash
                    ORDER BY f.ring, f.slot
                    LIMIT 1
                    FOR UPDATE OF f SKIP LOCKED)
                RETURNING k.ring, k.slot, k.secret_hash INTO v_ring, v_slot, v_hash;
                v_claimed := FOUND;
            END IF;
            PERFORM pg_advisory_xact_lock(hashtextextended('durakube-attempt:' || p_run_id, 0));
            INSERT INTO durakube.attempts AS a (run_id, attempt, pod_name, secret_hash)
            VALUES (p_run_id, p_attempt, p_pod_name, v_hash)
            ON CONFLICT (run_id, attempt) DO UPDATE
                SET pod_name = coalesce(a.pod_name, EXCLUDED.pod_name),
                    secret_hash = CASE WHEN a.outcome IS NULL
                                       THEN coalesce(EXCLUDED.secret_hash, a.secret_hash)
                                  END;
            UPDATE durakube.runs r SET attempt = greatest(r.attempt, p_attempt),
                                       status = coalesce(p_phase, r.status), updated_at = now()
            WHERE r.run_id = p_run_id AND (r.attempt < p_attempt OR p_phase IS NOT NULL);
            UPDATE durakube.attempts a SET secret_hash = NULL
            WHERE a.run_id = p_run_id AND a.attempt < p_attempt AND a.secret_hash IS NOT NULL;
            IF v_ring IS NOT NULL THEN
                RETURN QUERY SELECT v_ring, v_slot, v_claimed;
            END IF;
        END
        $fn$;
        REVOKE ALL ON FUNCTION durakube.operator_start_attempt(text, integer, text, text, bytea, text)
            FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION durakube.operator_start_attempt(text, integer, text, text, bytea, text)
            TO durakube_operator;
    """),
    Migration(25, "a run takes a free slot as it joins its queue", """
        -- A new run registers (when p_task_id is given) and joins its queue's line in one
        -- statement; when nobody waits in that line and the queue has room (not paused, no
        -- rate limit, under its limit and its per-key limit) it takes a slot at once
        -- instead, as an admission pass would have granted it: with nobody ahead there is
        -- no order to keep. Says 'granted' (a slot now), 'held' (the run held one
        -- already: a pass cut short after its grant, done again) or 'waiting' (in line).
        -- The queue's row lock is the admission passes' own, and every statement after it
        -- reads afresh (READ COMMITTED, a volatile function), so the limit holds with
        -- passes under way.
        CREATE FUNCTION durakube.operator_join_queue(
            p_run_id text, p_queue text, p_namespace text, p_name text, p_key text,
            p_priority integer, p_created_at timestamptz, p_default_limit integer,
            p_task_id text, p_payload jsonb)
        RETURNS text
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
        DECLARE
            q durakube.queues;
        BEGIN
            IF p_task_id IS NOT NULL THEN
                INSERT INTO durakube.runs (run_id, namespace, name, task_id, queue, payload, status)
                VALUES (p_run_id, p_namespace, p_name, p_task_id, p_queue, p_payload, 'Pending')
                ON CONFLICT (run_id) DO NOTHING;
            END IF;
            INSERT INTO durakube.queues (queue, concurrency_limit) VALUES (p_queue, p_default_limit)
            ON CONFLICT (queue) DO NOTHING;
            SELECT * INTO q FROM durakube.queues WHERE queue = p_queue FOR UPDATE;
            IF EXISTS (SELECT 1 FROM durakube.queue_slots WHERE run_id = p_run_id) THEN
                RETURN 'held';
            END IF;
            IF NOT q.paused AND q.rate_starts IS NULL AND q.key_rate_starts IS NULL
               AND NOT EXISTS (SELECT 1 FROM durakube.queue_waiting w
                               WHERE w.queue = p_queue AND w.run_id <> p_run_id)
               AND (SELECT count(*) FROM durakube.queue_slots s WHERE s.queue = p_queue)
                   < q.concurrency_limit
               AND (p_key = '' OR q.concurrency_limit_per_key IS NULL
                    OR (SELECT count(*) FROM durakube.queue_slots s
                        WHERE s.queue = p_queue AND s.concurrency_key = p_key)
                       < q.concurrency_limit_per_key) THEN
                DELETE FROM durakube.queue_waiting WHERE run_id = p_run_id;
                INSERT INTO durakube.queue_slots (queue, run_id, namespace, name, concurrency_key)
                VALUES (p_queue, p_run_id, p_namespace, p_name, p_key);
                INSERT INTO durakube.queue_keys (queue, concurrency_key, last_admitted_at)
                VALUES (p_queue, p_key, clock_timestamp())
                ON CONFLICT (queue, concurrency_key)
                DO UPDATE SET last_admitted_at = EXCLUDED.last_admitted_at;
                RETURN 'granted';
            END IF;
            INSERT INTO durakube.queue_waiting (run_id, queue, namespace, name, concurrency_key,
                                                priority, created_at)
            VALUES (p_run_id, p_queue, p_namespace, p_name, p_key, p_priority, p_created_at)
            ON CONFLICT (run_id) DO NOTHING;
            RETURN 'waiting';
        END
        $fn$;
        REVOKE ALL ON FUNCTION durakube.operator_join_queue(
            text, text, text, text, text, integer, timestamptz, integer, text, jsonb) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION durakube.operator_join_queue(
            text, text, text, text, text, integer, timestamptz, integer, text, jsonb)
            TO durakube_operator;
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
