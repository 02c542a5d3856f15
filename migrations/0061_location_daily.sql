-- Personal data at rest (issue 15): raw location tracks (tag_seen, mac_seen, target_tracked events) are
-- purged after the site's location retention; what is kept longer is this count per device and day,
-- which names no tag, MAC or person.
CREATE TABLE location_daily (
    site TEXT NOT NULL,
    day TEXT NOT NULL,
    device_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sightings BIGINT NOT NULL,
    PRIMARY KEY (site, day, device_id, event_type)
);
