-- Personal data at rest (issue 15): capture images (faces, plates, people) leave device_events and are
-- stored AES-GCM encrypted here, under the reference community_captures.snapshot_ref and alarm evidence
-- use; their retention follows what the capture was (stranger, resident, watchlist hit).
CREATE TABLE capture_images (
    ref TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    image_enc TEXT NOT NULL
);
CREATE INDEX ix_capture_images_ts ON capture_images (site, ts);

-- Events stored before this migration held credentials and images in the clear; without the key, SQL
-- can only drop them.
UPDATE device_events SET data = (data::jsonb - 'pin' - 'card' - 'payload' - 'embedding' - 'image_jpeg_b64')::text
WHERE type IN ('pin_entered', 'card_presented', 'qr_scanned', 'face_captured', 'plate_captured');
