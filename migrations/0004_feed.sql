-- Twin-change feed between the workers of one site (issue 8: several active workers).
-- The owner of a device partition writes its twin changes here in the same transaction as the
-- twins themselves; the site's leader (the holder of partition 0, which runs rules, access control
-- and telemetry) reads them in order and remembers how far it got.
CREATE TABLE twin_feed (
    site TEXT NOT NULL,
    part INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (site, part, seq)
);

CREATE TABLE twin_feed_cursors (
    site TEXT NOT NULL,
    part INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (site, part)
);
