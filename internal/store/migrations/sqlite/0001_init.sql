-- Samples in dataset order. position is 0-based and consecutive; runs work through it in order.
CREATE TABLE samples (
    id          TEXT    PRIMARY KEY,
    position    INTEGER NOT NULL UNIQUE,
    text        TEXT    NOT NULL,
    imported_at TEXT    NOT NULL -- RFC 3339 UTC
);

-- One annotation per (annotator, domain, sample). Times are RFC 3339 UTC text.
CREATE TABLE annotations (
    annotator      TEXT    NOT NULL,
    domain         TEXT    NOT NULL,
    sample_id      TEXT    NOT NULL REFERENCES samples (id),
    label          TEXT    NOT NULL DEFAULT '',
    status         TEXT    NOT NULL CHECK (status IN ('ok', 'malformed', 'error', 'blocked')),
    raw_reply      TEXT    NOT NULL DEFAULT '',
    parse_error    TEXT    NOT NULL DEFAULT '',
    validity_error TEXT    NOT NULL DEFAULT '',
    error          TEXT    NOT NULL DEFAULT '',
    model          TEXT    NOT NULL DEFAULT '',
    prompt_hash    TEXT    NOT NULL DEFAULT '',
    latency_ms     BIGINT  NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    attempt        INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    PRIMARY KEY (annotator, domain, sample_id)
);
