-- atrelay database schema: the single source of truth for every table.
--
-- The file is split into numbered migrations by `-- migrate:N` markers. Each
-- section is applied once, in order, inside a transaction, and recorded in
-- `schema_version`. Never edit a section that has shipped: append a new one.
-- The same SQL runs on PostgreSQL (production) and PGlite (embedded default).

-- migrate:1

-- Which migrations have been applied. The highest version is the schema version.
CREATE TABLE schema_version (
  version     integer PRIMARY KEY,
  applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Upstream hosts (PDSes) the relay crawls.
CREATE TABLE host (
  id              bigserial PRIMARY KEY,
  -- lower-case DNS name, no scheme; a port only for localhost:<port>
  hostname        text NOT NULL UNIQUE,
  -- true: wss/https; false: ws/http (only localhost with RELAY_ALLOW_INSECURE_HOSTS)
  ssl             boolean NOT NULL DEFAULT true,
  -- active | idle | offline | throttled | banned
  status          text NOT NULL DEFAULT 'active',
  -- last upstream seq fully processed (committed or deliberately dropped);
  -- 0 means none yet: a newly admitted host starts live, a known one resumes with cursor=0
  cursor          bigint NOT NULL DEFAULT 0,
  -- accounts beyond this many are throttled
  account_limit   integer NOT NULL,
  -- matched RELAY_TRUSTED_DOMAINS when admitted (bigger limits)
  trusted         boolean NOT NULL DEFAULT false,
  -- accounts currently tied to this host (decremented on delete and move-away)
  account_count   integer NOT NULL DEFAULT 0,
  -- per-host strictness override: null follows RELAY_LENIENT
  lenient         boolean,
  -- the most recent problem seen with this host, for operators
  last_error      text,
  last_error_at   timestamptz,
  -- when the host was first admitted (listHosts orders by this, oldest first)
  first_seen      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Accounts (repos) the relay has accepted events for.
CREATE TABLE account (
  id                  bigserial PRIMARY KEY,
  did                 text NOT NULL UNIQUE,
  -- the authoritative host (the PDS named in the DID document)
  host_id             bigint NOT NULL REFERENCES host (id),
  -- set by the relay's admin: active | takendown | throttled
  local_status        text NOT NULL DEFAULT 'active',
  -- as last reported by the host's #account: active | deactivated | deleted |
  -- suspended | takendown | desynchronized | throttled | inactive
  upstream_status     text NOT NULL DEFAULT 'active',
  -- when upstream_status was last confirmed (getRepoStatus re-check of stale "inactive")
  upstream_checked_at timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_host_idx ON account (host_id, id);

-- The head of each account's repo. Apart from `account` because it changes on
-- every commit and should stay a small, hot table.
CREATE TABLE account_head (
  account_id  bigint PRIMARY KEY REFERENCES account (id) ON DELETE CASCADE,
  -- latest accepted rev (TID); the next commit must be newer
  rev         text NOT NULL,
  -- CID (binary) of the latest accepted commit
  commit_cid  bytea NOT NULL,
  -- CID (binary) of that commit's MST root; the next prevData must equal it
  data_cid    bytea NOT NULL
);

-- The durable outbound event log. Partitioned by seq range so retention drops
-- whole partitions; the sequencer creates partitions as seq advances.
CREATE TABLE event (
  -- the relay's own sequence number, strictly increasing, never reused
  seq          bigint NOT NULL,
  account_id   bigint NOT NULL,
  -- 1 #commit, 2 #sync, 3 #identity, 4 #account
  kind         smallint NOT NULL,
  -- the complete outbound WebSocket message (header + body, relay seq spliced in)
  frame        bytea NOT NULL,
  -- the commit CID for #commit/#sync (getCommitPath), else null
  commit_cid   bytea,
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (seq)
) PARTITION BY RANGE (seq);
-- takedowns remove an account's events from replay; getCommitPath reads them
CREATE INDEX event_account_idx ON event (account_id, seq);

-- Domain bans, matched on the hostname and every parent suffix.
CREATE TABLE domain_ban (
  domain      text PRIMARY KEY,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Cached DID resolutions, so a restart does not re-resolve millions of DIDs.
CREATE TABLE identity (
  did           text PRIMARY KEY,
  -- ok | not_found | no_key | no_pds | failed
  status        text NOT NULL,
  -- the #atproto signing key as a did:key string (null unless status = ok)
  signing_key   text,
  -- the #atproto_pds service endpoint URL
  pds_endpoint  text,
  -- the handle the document claims (not yet bidirectionally verified)
  handle        text,
  -- why resolution failed, for operators
  error         text,
  fetched_at    timestamptz NOT NULL DEFAULT now()
);

-- Small key/value state: the seq high-water mark and run-time settings.
CREATE TABLE relay_state (
  key         text PRIMARY KEY,
  value       jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- migrate:2

-- listReposByCollection: which accounts have at least one record in a
-- collection. Kept by ingest in the same statement as the events that change
-- it (a create adds the pair, a delete that empties the collection removes it);
-- answers leave out accounts that are not active by joining `account`.
-- Collection names are stored once: (int4, int8) pairs measured 103 bytes per
-- pair with both indexes, against 144 with the name in every row (docs/benchmarks.md).
CREATE TABLE collection (
  id    serial PRIMARY KEY,
  -- the collection NSID
  nsid  text NOT NULL UNIQUE
);
CREATE TABLE repo_collection (
  collection_id  integer NOT NULL,
  account_id     bigint NOT NULL,
  PRIMARY KEY (collection_id, account_id)
);
-- an account's deletion removes all its pairs
CREATE INDEX repo_collection_account_idx ON repo_collection (account_id);

-- Accounts whose collections must be (re)read from their PDS (describeRepo):
-- after a #sync, or a backfill attempt that failed. The first pass over every
-- account walks account ids (its position is relay_state 'collections_backfill').
CREATE TABLE collection_backfill (
  account_id  bigint PRIMARY KEY,
  -- sync | retry
  reason      text NOT NULL,
  attempts    integer NOT NULL DEFAULT 0,
  due_at      timestamptz NOT NULL DEFAULT now(),
  last_error  text
);
CREATE INDEX collection_backfill_due_idx ON collection_backfill (due_at);

-- migrate:3

-- Jetstream time cursors: when the sequencer assigned each event its seq, in unix microseconds,
-- strictly increasing with seq. Null for events logged before this migration.
ALTER TABLE event ADD COLUMN time_us bigint;
-- a time cursor finds its seq without a scan (partitioned: one index per partition)
CREATE INDEX event_time_us_idx ON event (time_us);

-- migrate:4

-- Accounts held back by their host's account limit, and accounts taken down: few rows among millions.
-- getHostStatus and the admin host list count throttled accounts per host, a raised limit releases them
-- in id order, the admin takedown list reads takendown ones; without these partial indexes each of those
-- reads every account of the host (up to hundreds of thousands) or the whole table (docs/operations.md).
CREATE INDEX IF NOT EXISTS account_throttled_idx ON account (host_id, id) WHERE local_status = 'throttled';
CREATE INDEX IF NOT EXISTS account_takendown_idx ON account (id) WHERE local_status = 'takendown';
