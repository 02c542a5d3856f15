-- The access registry's change feed (issue 16 item 1): one row per site whose seq grows in the same
-- transaction as every change to what access decisions read (people, credentials, passes, watchlist,
-- vehicles, access devices, households, and the core device records). Every worker compares it with
-- the seq of its snapshot before each decision, so a revocation is seen by the next decision anywhere.
-- A pass use that leaves uses to spare does not count (only the last use narrows access), nor does
-- the purge deleting expired passes (an expired pass opens nothing already).
CREATE TABLE community_changes (
    site TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);

CREATE TRIGGER community_changes_people_insert AFTER INSERT ON community_people
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_people_update AFTER UPDATE ON community_people
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_people_delete AFTER DELETE ON community_people
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (OLD.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_passes_insert AFTER INSERT ON community_passes
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_passes_update AFTER UPDATE ON community_passes WHEN NEW.uses = OLD.uses OR NEW.uses >= NEW.max_uses
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_watchlist_insert AFTER INSERT ON community_watchlist
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_watchlist_update AFTER UPDATE ON community_watchlist
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_watchlist_delete AFTER DELETE ON community_watchlist
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (OLD.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_vehicles_insert AFTER INSERT ON community_vehicles
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_vehicles_update AFTER UPDATE ON community_vehicles
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_vehicles_delete AFTER DELETE ON community_vehicles
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (OLD.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_devices_insert AFTER INSERT ON community_devices
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_devices_update AFTER UPDATE ON community_devices
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_devices_delete AFTER DELETE ON community_devices
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (OLD.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_households_insert AFTER INSERT ON community_households
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_households_update AFTER UPDATE ON community_households
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_households_delete AFTER DELETE ON community_households
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (OLD.site, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_credentials_insert AFTER INSERT ON community_credentials
BEGIN
    INSERT INTO community_changes (site, seq) SELECT site, 1 FROM community_people WHERE id = NEW.person_id ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_credentials_update AFTER UPDATE ON community_credentials
BEGIN
    INSERT INTO community_changes (site, seq) SELECT site, 1 FROM community_people WHERE id = NEW.person_id ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_credentials_delete AFTER DELETE ON community_credentials
BEGIN
    INSERT INTO community_changes (site, seq) SELECT site, 1 FROM community_people WHERE id = OLD.person_id ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_core_devices_update AFTER UPDATE ON devices
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (NEW.site_id, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;

CREATE TRIGGER community_changes_core_devices_delete AFTER DELETE ON devices
BEGIN
    INSERT INTO community_changes (site, seq) VALUES (OLD.site_id, 1) ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
END;
