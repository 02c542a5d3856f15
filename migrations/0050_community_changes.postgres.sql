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

CREATE FUNCTION community_changes_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_site TEXT;
    r RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'community_credentials' THEN
        SELECT site INTO row_site FROM community_people WHERE id = r.person_id;
    ELSIF TG_TABLE_NAME = 'devices' THEN
        row_site := r.site_id;
    ELSE
        row_site := r.site;
    END IF;
    IF row_site IS NOT NULL THEN
        INSERT INTO community_changes (site, seq) VALUES (row_site, 1)
            ON CONFLICT (site) DO UPDATE SET seq = community_changes.seq + 1;
        PERFORM pg_notify('community_changes', row_site);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER community_changes_people AFTER INSERT OR UPDATE OR DELETE ON community_people
    FOR EACH ROW EXECUTE FUNCTION community_changes_bump();
CREATE TRIGGER community_changes_passes_insert AFTER INSERT ON community_passes
    FOR EACH ROW EXECUTE FUNCTION community_changes_bump();
CREATE TRIGGER community_changes_passes_update AFTER UPDATE ON community_passes
    FOR EACH ROW WHEN (NEW.uses = OLD.uses OR NEW.uses >= NEW.max_uses)
    EXECUTE FUNCTION community_changes_bump();
CREATE TRIGGER community_changes_watchlist AFTER INSERT OR UPDATE OR DELETE ON community_watchlist
    FOR EACH ROW EXECUTE FUNCTION community_changes_bump();
CREATE TRIGGER community_changes_vehicles AFTER INSERT OR UPDATE OR DELETE ON community_vehicles
    FOR EACH ROW EXECUTE FUNCTION community_changes_bump();
CREATE TRIGGER community_changes_devices AFTER INSERT OR UPDATE OR DELETE ON community_devices
    FOR EACH ROW EXECUTE FUNCTION community_changes_bump();
CREATE TRIGGER community_changes_households AFTER INSERT OR UPDATE OR DELETE ON community_households
    FOR EACH ROW EXECUTE FUNCTION community_changes_bump();
CREATE TRIGGER community_changes_credentials AFTER INSERT OR UPDATE OR DELETE ON community_credentials
    FOR EACH ROW EXECUTE FUNCTION community_changes_bump();
CREATE TRIGGER community_changes_core_devices AFTER UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION community_changes_bump();
