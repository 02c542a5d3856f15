-- Device lifecycle (issue 20 item 3): a disabled device is refused by the broker until enabled.
ALTER TABLE devices ADD COLUMN disabled_at DOUBLE PRECISION;
