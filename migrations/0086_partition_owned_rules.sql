-- Rules run on every partition owner (issue 21 item 1: no leader bottleneck). Each owner's engine
-- keeps the state of the entities it owns (rules.routing): rule_timers rows carry the partition that
-- wrote them, so an owner loads and flushes only its own and a takeover continues exactly those; a
-- single-partition site keeps everything in partition 0. The feed between owners is addressed: a row
-- goes from a writer stream (a partition's batches, or -1-p for partition p's platform events) to the
-- partition that owns an entity some rule keys the input on, with a cursor per writer and reader.
-- Portable SQL (SQLite + PostgreSQL): the tables are rebuilt with their new primary keys.
CREATE TABLE rule_timers_parts (
    site TEXT NOT NULL,
    part INTEGER NOT NULL DEFAULT 0,
    key TEXT NOT NULL,
    due DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (site, part, key)
);
INSERT INTO rule_timers_parts(site, part, key, due, body, updated_at)
    SELECT site, 0, key, due, body, updated_at FROM rule_timers;
DROP TABLE rule_timers;
ALTER TABLE rule_timers_parts RENAME TO rule_timers;

CREATE TABLE twin_feed_targets (
    site TEXT NOT NULL,
    part INTEGER NOT NULL,
    target INTEGER NOT NULL DEFAULT 0,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (site, part, target, seq)
);
INSERT INTO twin_feed_targets(site, part, target, seq, body) SELECT site, part, 0, seq, body FROM twin_feed;
DROP TABLE twin_feed;
ALTER TABLE twin_feed_targets RENAME TO twin_feed;

CREATE TABLE twin_feed_cursors_targets (
    site TEXT NOT NULL,
    part INTEGER NOT NULL,
    target INTEGER NOT NULL DEFAULT 0,
    seq BIGINT NOT NULL,
    PRIMARY KEY (site, part, target)
);
INSERT INTO twin_feed_cursors_targets(site, part, target, seq) SELECT site, part, 0, seq FROM twin_feed_cursors;
DROP TABLE twin_feed_cursors;
ALTER TABLE twin_feed_cursors_targets RENAME TO twin_feed_cursors;
