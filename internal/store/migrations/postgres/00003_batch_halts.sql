-- The latest batch of each run that was paused or stopped, as migrations/sqlite/0004.

-- +goose Up
CREATE TABLE batch_halts (
    workflow_id TEXT PRIMARY KEY,
    batch_key   TEXT NOT NULL
);

-- +goose Down
DROP TABLE batch_halts;
