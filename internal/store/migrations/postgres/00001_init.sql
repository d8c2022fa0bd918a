-- The PostgreSQL schema, applied by goose (pressly/goose) and recorded in goose_db_version.
-- It is the SQLite schema of migrations/sqlite up to 0002_annotation_seq.sql, with native types:
-- times are timestamptz (to the microsecond), integers are bigint, like SQLite's 64-bit INTEGER.
--
-- Keys and statuses are COLLATE "C": they compare and sort byte by byte, as in SQLite, whatever
-- the database's locale. Sample texts and raw replies keep the database's collation, whose
-- LC_CTYPE lower() uses for the case-insensitive text filter.

-- +goose Up

-- Samples in dataset order. position is 0-based and consecutive; runs work through it in order.
CREATE TABLE samples (
    id          TEXT COLLATE "C" PRIMARY KEY,
    position    BIGINT      NOT NULL UNIQUE,
    text        TEXT        NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL
);

-- One annotation per (annotator, domain, sample). seq is the global change sequence: every
-- insert or replacement gives the row the next one, taken from annotation_seq.
CREATE TABLE annotations (
    annotator      TEXT COLLATE "C" NOT NULL,
    domain         TEXT COLLATE "C" NOT NULL,
    sample_id      TEXT COLLATE "C" NOT NULL REFERENCES samples (id),
    label          TEXT        NOT NULL DEFAULT '',
    status         TEXT COLLATE "C" NOT NULL CHECK (status IN ('ok', 'malformed', 'error', 'blocked')),
    raw_reply      TEXT        NOT NULL DEFAULT '',
    parse_error    TEXT        NOT NULL DEFAULT '',
    validity_error TEXT        NOT NULL DEFAULT '',
    error          TEXT        NOT NULL DEFAULT '',
    model          TEXT        NOT NULL DEFAULT '',
    prompt_hash    TEXT        NOT NULL DEFAULT '',
    latency_ms     BIGINT      NOT NULL DEFAULT 0,
    input_tokens   BIGINT      NOT NULL DEFAULT 0,
    output_tokens  BIGINT      NOT NULL DEFAULT 0,
    attempt        BIGINT      NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    seq            BIGINT      NOT NULL,
    PRIMARY KEY (annotator, domain, sample_id)
);

CREATE UNIQUE INDEX annotations_seq ON annotations (seq);
-- One sample's annotations (Store.Sample).
CREATE INDEX annotations_sample ON annotations (sample_id);

-- The last seq assigned, in its one row. Writers lock the row (UPDATE ... RETURNING) for the
-- rest of their transaction, so seqs are assigned and committed one writer at a time, in order.
-- A counter of its own, rather than MAX(seq), so that a seq is never assigned twice even when
-- the newest annotations are deleted.
CREATE TABLE annotation_seq (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT  NOT NULL
);
INSERT INTO annotation_seq (id, last_seq) VALUES (1, 0);

-- +goose Down
DROP TABLE annotation_seq;
DROP TABLE annotations;
DROP TABLE samples;
