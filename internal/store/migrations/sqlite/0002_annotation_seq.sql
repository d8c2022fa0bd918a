-- A global change sequence on annotations: every insert or replacement gives the row the next
-- seq, so readers can follow the changes (seq > n) and page newest first.
ALTER TABLE annotations ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;

-- Existing rows are numbered from 1 in created order, ties in insertion order. created_at is
-- RFC 3339 text with its fraction trimmed ("...:05Z", "...:05.5Z"), which does not sort as text;
-- the key pads the fraction to nine digits. It is the same expression as createdKey in sqlite.go.
UPDATE annotations SET seq = ordered.n
FROM (
    SELECT rowid AS id,
           ROW_NUMBER() OVER (ORDER BY
               substr(created_at, 1, 19) || '.' ||
               substr(ltrim(rtrim(substr(created_at, 20), 'Z'), '.') || '000000000', 1, 9) || 'Z',
               rowid) AS n
    FROM annotations
) AS ordered
WHERE annotations.rowid = ordered.id;

CREATE UNIQUE INDEX annotations_seq ON annotations (seq);

-- The last seq assigned, in its one row. A counter of its own, rather than MAX(seq), so that a
-- seq is never assigned twice even when the newest annotations are deleted.
CREATE TABLE annotation_seq (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
INSERT INTO annotation_seq (id, last_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM annotations;
