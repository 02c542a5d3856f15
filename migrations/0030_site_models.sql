-- One site model (issue 14 item 3): each site's validated plan (zones and fences, buildings, households,
-- entrances and device placements, tags, pick-up windows) as a JSON document, written by
-- `anfang site load FILE` (or from the configured site file at start). No roster: people, vehicles and
-- the watchlist live (encrypted) in the access-control registry.
CREATE TABLE site_models (
    site TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    version BIGINT NOT NULL,
    source TEXT NOT NULL,
    loaded_at DOUBLE PRECISION NOT NULL
);
