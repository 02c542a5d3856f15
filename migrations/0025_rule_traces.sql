-- The last trace entries of each rule (issue 17 item 6), so that staff read why a rule fired or did
-- not through the API of any process of the site, not only the one running the rules. One row per
-- site and rule: its newest entries as a JSON list, rewritten by the engine at most once per tick.
-- Portable SQL (SQLite + PostgreSQL).

CREATE TABLE IF NOT EXISTS rule_traces (
    site TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    entries TEXT NOT NULL,
    PRIMARY KEY (site, rule_id)
);
