-- One site model (issue 14 item 3): buildings and device placements live in the site model
-- (`site_models`, 0030) only; the access registry keeps what is its own (households, people,
-- credentials, passes, vehicles, watchlist) and, per door, the generation of its edge key.
--
-- 1. A site whose access placements were registered without a site model being stored (an older
--    `anfang community import` of a file with buildings/devices) gets a site model made of them, so
--    nothing its doors were placed by is lost. A site with a stored model keeps it: `anfang site load`
--    registered the same placements from it.
INSERT INTO site_models (site, document, version, source, loaded_at)
SELECT s.site,
       json_object(
           'site', s.site,
           'buildings', json((SELECT json_group_array(json_object(
               'id', b.id, 'name', COALESCE(b.name, ''), 'units', b.units, 'floors', b.floors))
               FROM community_buildings b WHERE b.site = s.site)),
           'devices', json((SELECT json_group_array(json_object(
               'id', d.id, 'kind', d.kind, 'name', COALESCE(d.name, ''),
               'building', d.building_id, 'unit', d.unit, 'gate', d.gate_id))
               FROM community_devices d WHERE d.site = s.site))
       ),
       1, 'migration 0059 (community_buildings, community_devices)', 0
FROM (SELECT site FROM community_buildings UNION SELECT site FROM community_devices) s
WHERE s.site NOT IN (SELECT site FROM site_models);

-- 2. Each door's edge-key generation moves to its own table (what community_devices.edge_key_epoch was).
CREATE TABLE community_edge_keys (
    device_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0
);
INSERT INTO community_edge_keys (device_id, site, epoch)
SELECT id, site, edge_key_epoch FROM community_devices WHERE edge_key_epoch > 0;

-- 3. The duplicates go (their change-feed triggers with them).
DROP TABLE community_devices;
DROP TABLE community_buildings;

-- 4. The change feed: a new site model (placements) or a rotated edge key changes what decisions read.
CREATE TRIGGER community_changes_site_models_insert AFTER INSERT ON site_models
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_site_models_update AFTER UPDATE ON site_models
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_edge_keys_insert AFTER INSERT ON community_edge_keys
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_edge_keys_update AFTER UPDATE ON community_edge_keys
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;
