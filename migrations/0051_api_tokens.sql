-- API tokens bound to a site and a role, with an expiry, listable and revocable by id (issue 16 item 2).
-- Tokens issued before: bound to their person's site and role, expiring 12 h (staff, police) or
-- 30 days (residents) after they were created.
ALTER TABLE community_api_tokens ADD COLUMN id TEXT;
ALTER TABLE community_api_tokens ADD COLUMN site TEXT;
ALTER TABLE community_api_tokens ADD COLUMN role TEXT;
ALTER TABLE community_api_tokens ADD COLUMN expires_at DOUBLE PRECISION;
ALTER TABLE community_api_tokens ADD COLUMN revoked_at DOUBLE PRECISION;
ALTER TABLE community_api_tokens ADD COLUMN created_by TEXT;
UPDATE community_api_tokens SET
    id = 'tok_' || substr(token_hash, 1, 16),
    site = (SELECT p.site FROM community_people p WHERE p.id = community_api_tokens.person_id),
    role = (SELECT p.role FROM community_people p WHERE p.id = community_api_tokens.person_id);
UPDATE community_api_tokens SET
    expires_at = created_at + CASE WHEN role IN ('staff', 'police') THEN 43200 ELSE 2592000 END;
CREATE UNIQUE INDEX ux_community_api_tokens_id ON community_api_tokens (id);
CREATE INDEX ix_community_api_tokens_site_person ON community_api_tokens (site, person_id);
