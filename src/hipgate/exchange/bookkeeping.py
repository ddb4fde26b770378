"""The middleware's bookkeeping tables and the change capture, as SQL made from the dataset.

They live in the exchange database beside the data (schema `exchange`, names `hipgate_*`), so a record's
progress and the data change in one transaction. Every statement is idempotent (`IF NOT EXISTS`,
`CREATE OR REPLACE`): the role that applies it may run it on every deploy.

Upload tables belong to the provincial platform and get only a trigger; everything the middleware knows
about their records is here, so the middleware never updates a province's row (which would fire the
capture again and send the record a second time).
"""

from __future__ import annotations

from hipgate.exchange.dataset import SCHEMA_NAME_RE, Dataset, RecordType

# Per-record results of 4101, plus the middleware's own verdict.
RECORD_STATES = ("accepted", "duplicate", "rejected", "quarantined")
OUTBOX_STATES = ("pending", "acked", "superseded")
# The runs `python -m hipgate.exchange.run` records (status, report and metrics only read).
RUN_KINDS = ("incremental", "downloads", "history-export", "history-upload")
RUN_STATES = ("running", "ok", "refused", "unreachable", "error")
# What failed: an incremental message, a download page or its acknowledgement, a history file's transaction.
FAILURE_KINDS = ("incremental", "downloads", "history")
METRICS = (
    "changes", "sent", "accepted", "duplicate", "rejected", "quarantined", "messages", "failures",
    "downloaded", "acknowledged", "anomalies", "files", "chunks",
)  # fmt: skip


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _in(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v + "'" for v in values)


def upload_types(ds: Dataset) -> list[RecordType]:
    """Record types the province writes and the middleware sends (upload or both ways)."""
    return [rt for rt in ds.records.values() if rt.direction in ("upload", "both")]


def tables_ddl(schema: str = "exchange") -> str:
    s = _q(schema)
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};

-- One row per insert/update of an upload record (or of one of its items): which record, in which
-- transaction, when. The incremental run reads only rows of finished transactions (see hipgate_watermark).
CREATE TABLE IF NOT EXISTS {s}."hipgate_change" (
  "id" bigserial PRIMARY KEY,
  "record_type" varchar(32) NOT NULL,
  "record_key" jsonb NOT NULL,
  "xid" xid8 NOT NULL DEFAULT pg_current_xact_id(),
  "changed_at" timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS "hipgate_change_type_xid" ON {s}."hipgate_change" ("record_type", "xid");

-- Per record type: every change of a transaction below `horizon` has been read. The horizon is the
-- xmin of a snapshot (pg_snapshot_xmin(pg_current_snapshot())): all older transactions had finished,
-- so no change can appear behind it later, whatever its updt_time.
CREATE TABLE IF NOT EXISTS {s}."hipgate_watermark" (
  "record_type" varchar(32) PRIMARY KEY,
  "horizon" xid8 NOT NULL,
  "updated_at" timestamptz NOT NULL DEFAULT now()
);

-- A message is stored (with its msgid) before it is sent; resent with the same msgid until acknowledged.
-- `envelope` is the unsigned request (the relay signs it); emptied once acknowledged.
CREATE TABLE IF NOT EXISTS {s}."hipgate_outbox" (
  "msgid" varchar(28) PRIMARY KEY,
  "infno" varchar(4) NOT NULL,
  "record_type" varchar(32) NOT NULL,
  "envelope" jsonb NULL,
  "status" varchar(16) NOT NULL DEFAULT 'pending' CHECK ("status" IN ({_in(OUTBOX_STATES)})),
  "attempts" integer NOT NULL DEFAULT 0,
  "last_error" text NULL,
  "infcode" integer NULL,
  "superseded_by" varchar(28) NULL,
  "created_at" timestamptz NOT NULL DEFAULT now(),
  "sent_at" timestamptz NULL,
  "acked_at" timestamptz NULL
);
CREATE INDEX IF NOT EXISTS "hipgate_outbox_pending" ON {s}."hipgate_outbox" ("created_at") WHERE "status" = 'pending';

-- The records a message carries: key, version (updt_time and fingerprint), and the platform's result.
CREATE TABLE IF NOT EXISTS {s}."hipgate_outbox_record" (
  "msgid" varchar(28) NOT NULL REFERENCES {s}."hipgate_outbox" ("msgid") ON DELETE CASCADE,
  "idx" integer NOT NULL,
  "record_key" jsonb NOT NULL,
  "updt_time" varchar(19) NULL,
  "fingerprint" char(64) NOT NULL,
  "day" varchar(10) NOT NULL,
  "changed_at" timestamptz NULL,
  "result" varchar(16) NULL CHECK ("result" IN ('accepted', 'duplicate', 'rejected')),
  "err_msg" text NULL,
  PRIMARY KEY ("msgid", "idx")
);

-- Where each record stands (replaces per-row status columns on the province's tables).
CREATE TABLE IF NOT EXISTS {s}."hipgate_record_state" (
  "record_type" varchar(32) NOT NULL,
  "record_key" jsonb NOT NULL,
  "status" varchar(16) NOT NULL CHECK ("status" IN ({_in(RECORD_STATES)})),
  "fingerprint" char(64) NOT NULL,
  "day" varchar(10) NOT NULL,
  "msgid" varchar(28) NULL,
  "err_msg" text NULL,
  "updated_at" timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY ("record_type", "record_key")
);

-- A record that violates the dataset or the interface document: never sent. Only its key and a masked
-- copy are kept (no personal data in clear); a later valid version resolves it.
CREATE TABLE IF NOT EXISTS {s}."hipgate_quarantine" (
  "id" bigserial PRIMARY KEY,
  "record_type" varchar(32) NOT NULL,
  "record_key" jsonb NOT NULL,
  "fingerprint" char(64) NOT NULL,
  "reasons_zh" text NOT NULL,
  "reasons_en" text NOT NULL,
  "masked" jsonb NOT NULL,
  "source" varchar(16) NOT NULL DEFAULT 'incremental',
  "quarantined_at" timestamptz NOT NULL DEFAULT now(),
  "resolved_at" timestamptz NULL,
  UNIQUE ("record_type", "record_key", "fingerprint")
);

-- History files: one row per exported file, its manifest, its upload and its chunks.
CREATE TABLE IF NOT EXISTS {s}."hipgate_history_file" (
  "file_name" varchar(64) PRIMARY KEY,
  "record_type" varchar(32) NOT NULL,
  "admdvs" varchar(6) NOT NULL,
  "year" integer NOT NULL,
  "path" text NOT NULL,
  "record_count" bigint NOT NULL,
  "file_size" bigint NOT NULL,
  "file_sha256" char(64) NOT NULL,
  "chunk_size" integer NOT NULL,
  "chunk_count" integer NOT NULL,
  "manifest" jsonb NOT NULL,
  "status" varchar(16) NOT NULL DEFAULT 'exported' CHECK ("status" IN ('exported', 'uploading', 'complete')),
  "upload_id" varchar(64) NULL,
  "file_qry_no" varchar(64) NULL,
  "exported_at" timestamptz NOT NULL DEFAULT now(),
  "completed_at" timestamptz NULL
);
CREATE TABLE IF NOT EXISTS {s}."hipgate_history_chunk" (
  "file_name" varchar(64) NOT NULL REFERENCES {s}."hipgate_history_file" ("file_name") ON DELETE CASCADE,
  "chunk_index" integer NOT NULL,
  "offset" bigint NOT NULL,
  "size" integer NOT NULL,
  "sha256" char(64) NOT NULL,
  "confirmed_at" timestamptz NULL,
  PRIMARY KEY ("file_name", "chunk_index")
);

-- Downloads: the cursor per transaction, advanced only after the page it ends was acknowledged.
CREATE TABLE IF NOT EXISTS {s}."hipgate_download_cursor" (
  "infno" varchar(4) PRIMARY KEY,
  "record_type" varchar(32) NOT NULL,
  "cursor" varchar(256) NULL,
  "updated_at" timestamptz NOT NULL DEFAULT now()
);
-- A stored page whose acknowledgement is outstanding (acked_at null): acknowledged first on the next run.
CREATE TABLE IF NOT EXISTS {s}."hipgate_download_page" (
  "msgid" varchar(28) PRIMARY KEY,
  "infno" varchar(4) NOT NULL,
  "record_type" varchar(32) NOT NULL,
  "cursor" varchar(256) NULL,
  "next_cursor" varchar(256) NULL,
  "record_keys" jsonb NOT NULL,
  "ack_envelope" jsonb NULL,
  "stored_at" timestamptz NOT NULL DEFAULT now(),
  "acked_at" timestamptz NULL
);

-- Counters per day (China Standard Time) for `hipgate exchange status` and the report.
CREATE TABLE IF NOT EXISTS {s}."hipgate_metric_day" (
  "day" date NOT NULL,
  "metric" varchar(32) NOT NULL CHECK ("metric" IN ({_in(METRICS)})),
  "record_type" varchar(32) NOT NULL DEFAULT '',
  "value" bigint NOT NULL DEFAULT 0,
  PRIMARY KEY ("day", "metric", "record_type")
);
-- Lag of one acknowledged message: from the records' changes to the platform's acknowledgement recorded.
CREATE TABLE IF NOT EXISTS {s}."hipgate_lag_sample" (
  "msgid" varchar(28) PRIMARY KEY,
  "day" date NOT NULL,
  "record_type" varchar(32) NOT NULL,
  "records" integer NOT NULL,
  "lag_max_s" double precision NOT NULL,
  "lag_avg_s" double precision NOT NULL
);
-- Each record's lag (seconds, in message order), so the report's percentiles are exact. Added after the
-- first release: NULL in older samples, which the report counts as `records` times their mean.
ALTER TABLE {s}."hipgate_lag_sample" ADD COLUMN IF NOT EXISTS "lags_s" double precision[] NULL;

-- One row per run of the middleware (written when it starts, finished when it ends): the report's
-- availability. A row left `running` behind a later run of the same kind was interrupted (kill, crash).
CREATE TABLE IF NOT EXISTS {s}."hipgate_run" (
  "id" bigserial PRIMARY KEY,
  "kind" varchar(16) NOT NULL CHECK ("kind" IN ({_in(RUN_KINDS)})),
  "started_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
  "finished_at" timestamptz NULL,
  "status" varchar(16) NOT NULL DEFAULT 'running' CHECK ("status" IN ({_in(RUN_STATES)})),
  "exit_code" integer NULL,
  "summary" jsonb NULL
);
CREATE INDEX IF NOT EXISTS "hipgate_run_kind_started" ON {s}."hipgate_run" ("kind", "started_at");

-- One row per failed request (refused, unreachable after the retries, or a reply that does not fit), with
-- when it happened: status's "failures in the last 24 hours" (the day counters cannot say that).
CREATE TABLE IF NOT EXISTS {s}."hipgate_failure" (
  "id" bigserial PRIMARY KEY,
  "at" timestamptz NOT NULL DEFAULT clock_timestamp(),
  "kind" varchar(16) NOT NULL CHECK ("kind" IN ({_in(FAILURE_KINDS)})),
  "record_type" varchar(32) NOT NULL DEFAULT '',
  "infno" varchar(4) NULL,
  "msgid" varchar(28) NULL,
  "error" text NOT NULL
);
CREATE INDEX IF NOT EXISTS "hipgate_failure_at" ON {s}."hipgate_failure" ("at");
"""


def capture_ddl(ds: Dataset, schema: str = "exchange") -> str:
    """The capture function and a trigger on every upload table and its items. The function runs as its
    owner (SECURITY DEFINER, fixed search_path), so the province's writer needs no right on the
    bookkeeping tables."""
    s = _q(schema)
    out = [
        f"""CREATE OR REPLACE FUNCTION {s}."hipgate_capture"() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $hg$
DECLARE
  r jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
  k jsonb := '{{}}'::jsonb;
  i integer;
BEGIN
  -- TG_ARGV: the record type, then the columns of its key (for items: the parent's key).
  FOR i IN 1 .. TG_NARGS - 1 LOOP
    k := k || jsonb_build_object(TG_ARGV[i], r -> TG_ARGV[i]);
  END LOOP;
  INSERT INTO {s}."hipgate_change" ("record_type", "record_key") VALUES (TG_ARGV[0], k);
  RETURN NULL;
END
$hg$;
REVOKE ALL ON FUNCTION {s}."hipgate_capture"() FROM PUBLIC;"""
    ]
    for rt in upload_types(ds):
        args = ", ".join("'" + a + "'" for a in (rt.code, *rt.key))
        out.append(
            f'CREATE OR REPLACE TRIGGER "hipgate_capture" AFTER INSERT OR UPDATE ON {s}.{_q(rt.code)}'
            f' FOR EACH ROW EXECUTE FUNCTION {s}."hipgate_capture"({args});'
        )
        if rt.items is not None:
            # An item added, changed or removed changes the settlement: the whole record is sent again.
            out.append(
                f'CREATE OR REPLACE TRIGGER "hipgate_capture" AFTER INSERT OR UPDATE OR DELETE'
                f' ON {s}.{_q(rt.items.code)} FOR EACH ROW EXECUTE FUNCTION {s}."hipgate_capture"({args});'
            )
    return "\n".join(out) + "\n"


def bookkeeping_ddl(ds: Dataset, schema: str = "exchange") -> str:
    """Everything the middleware needs in the exchange database beside the exchange tables
    (`dataset.dataset_ddl`, applied first): the bookkeeping tables, the capture function and triggers."""
    if not SCHEMA_NAME_RE.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} is not a plain lower-case identifier")
    return tables_ddl(schema) + "\n" + capture_ddl(ds, schema)
