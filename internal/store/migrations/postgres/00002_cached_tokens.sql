-- The input tokens a provider served from its prompt cache, as migrations/sqlite/0003.

-- +goose Up
ALTER TABLE annotations ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE annotations DROP COLUMN cached_tokens;
