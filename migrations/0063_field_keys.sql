-- Field-key generations (issue 15 item 8): which generation of the AES-GCM field key new ciphertexts of a
-- site are written under. anfang keys rotate moves it on and re-encrypts every protected field; readers
-- accept every generation (the key id is the ciphertext's prefix: v1, k1, k2, ...).
CREATE TABLE IF NOT EXISTS privacy_field_keys (
    site TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    rotated_at DOUBLE PRECISION NOT NULL
);
