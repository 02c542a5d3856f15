-- Which worker serves which partition of a site (issue 21 item 2: workers join and leave a running
-- site). Every worker heartbeats in site_workers; under a lock, one of them at a time recomputes the
-- target owner of each partition (anfang/assignment.py) from the live workers. A partition's
-- holder is the worker serving it now (it holds the partition's advisory lock); it is cleared when
-- the holder hands the partition off. Times are the database's clock, never a worker's.
CREATE TABLE site_workers (
    site TEXT NOT NULL,
    worker TEXT NOT NULL,
    joined_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (site, worker)
);

CREATE TABLE partition_owners (
    site TEXT NOT NULL,
    part INTEGER NOT NULL,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    holder TEXT,
    PRIMARY KEY (site, part)
);

-- A device whose twin topics its partition's MQTT session is subscribed to (after the SUBACK):
-- provisioning hands out a device's secret only once it is here, so its first message is served.
CREATE TABLE served_devices (
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    PRIMARY KEY (site, device_id)
);
