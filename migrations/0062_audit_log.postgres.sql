-- The audit log of personal-data access (issue 15 item 7): one table for the API, the console and the CLI
-- (community_audit_log). Each row says who (actor, role), why (purpose), what (action), about whom (target:
-- an id or a keyed reference, never a value) and when. Append-only: rows are never changed; only the
-- retention purge deletes them (after privacy.audit_days).
ALTER TABLE community_audit_log ADD COLUMN purpose TEXT;
CREATE INDEX IF NOT EXISTS ix_community_audit_log_actor ON community_audit_log (actor, ts);
CREATE INDEX IF NOT EXISTS ix_community_audit_log_target ON community_audit_log (target, ts);

CREATE FUNCTION community_audit_log_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'community_audit_log is append-only';
END;
$$;

CREATE TRIGGER community_audit_log_append_only BEFORE UPDATE ON community_audit_log
    FOR EACH ROW EXECUTE FUNCTION community_audit_log_refuse_update();
