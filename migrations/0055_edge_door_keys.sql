-- Sealed edge allow-lists (issue 16 item 3): the generation of each door's key. A door's key is derived
-- from the site master key, the device id and this number; rotating it (a door stolen, a terminal
-- replaced) makes every list sealed before useless and shows the door its new key once.
ALTER TABLE community_devices ADD COLUMN edge_key_epoch INTEGER NOT NULL DEFAULT 0;
