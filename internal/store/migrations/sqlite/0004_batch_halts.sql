-- The latest batch of each run that was paused or stopped. The run workflow writes it before
-- it asks the server to cancel the batch, and the batch's lanes read it before every paid
-- call: a cheap local read instead of a round trip to the server per call.
CREATE TABLE batch_halts (
    workflow_id TEXT PRIMARY KEY,
    batch_key   TEXT NOT NULL
);
