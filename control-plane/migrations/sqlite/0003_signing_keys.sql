-- Policy signing keys (issue #11): every policy answer is sealed with the keys that sign at
-- the time (edge-policy/src/seal.rs). The secret is kept here, with the store: whoever can
-- read this database can sign policy, as whoever can write it can change policy.
CREATE TABLE signing_keys (
    key_id      TEXT    PRIMARY KEY,        -- 16 hex digits: SHA-256(public key)[..8]
    secret      BLOB    NOT NULL CHECK (length(secret) = 32),
    created_at  INTEGER NOT NULL,
    retire_at   INTEGER                     -- stops signing then; NULL for the newest key
);

-- Keys are never deleted: an old answer's key id must always resolve.
CREATE TRIGGER signing_keys_no_delete BEFORE DELETE ON signing_keys
BEGIN
    SELECT RAISE(ABORT, 'signing keys are never deleted');
END;
