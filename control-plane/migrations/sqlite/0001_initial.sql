-- Edge containment control plane: initial schema (SQLite).
-- Times are Unix milliseconds (INTEGER) unless the column name says otherwise.

CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    hash        BLOB    NOT NULL UNIQUE,   -- SHA-256 of the clear token
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    revoked_at  INTEGER,
    revoked_by  TEXT
);

CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    title           TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    phase           TEXT    NOT NULL,
    assignee        TEXT,
    detected_at     INTEGER NOT NULL,
    reported_at     INTEGER NOT NULL,
    systems         TEXT    NOT NULL,      -- JSON array of strings
    personal_data   INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    created_by      TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL,
    closed_at       INTEGER
);
CREATE INDEX incidents_phase ON incidents (phase);
CREATE INDEX incidents_severity ON incidents (severity);

CREATE TABLE timeline (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    at           INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    reason       TEXT,
    data         TEXT                      -- JSON
);
CREATE INDEX timeline_incident ON timeline (incident_id, id);

CREATE TABLE actions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id),
    kind            TEXT    NOT NULL,      -- block | isolate | allow
    target_type     TEXT    NOT NULL,      -- cidr | api_key | account | pixel | host | path_prefix
    target_value    TEXT    NOT NULL,      -- api_key: hex SHA-256, never the key
    isolation       TEXT,                  -- isolate only
    target_key      TEXT    NOT NULL,      -- canonical kind:type:value, for duplicate checks
    mode            TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    forced          INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    created_by      TEXT    NOT NULL,
    created_version INTEGER NOT NULL,
    expires_at      INTEGER,
    state           TEXT    NOT NULL,      -- active | lifted | expired
    ended_at        INTEGER,
    ended_by        TEXT,
    end_reason      TEXT,
    ended_version   INTEGER
);
CREATE INDEX actions_state ON actions (state, target_key);
CREATE INDEX actions_incident ON actions (incident_id);

-- One row: the current policy version. Only ever incremented.
CREATE TABLE policy_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO policy_state (id, version) VALUES (1, 0);

-- Which actions each policy version changed (an upsert or a removal; the action's
-- current state tells which).
CREATE TABLE policy_changes (
    version    INTEGER NOT NULL,
    action_id  INTEGER NOT NULL REFERENCES actions (id),
    PRIMARY KEY (version, action_id)
);

CREATE TABLE audit (
    seq          INTEGER PRIMARY KEY,
    at           TEXT    NOT NULL,         -- RFC 3339 UTC, part of the hash
    at_ms        INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    verb         TEXT    NOT NULL,
    object       TEXT    NOT NULL,
    incident_id  INTEGER,
    before       TEXT,                     -- JSON
    after        TEXT,                     -- JSON
    reason       TEXT,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL
);
CREATE INDEX audit_incident ON audit (incident_id, seq);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_at ON audit (at_ms);

-- The API never updates or deletes audit rows; the database refuses it too.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;

CREATE TABLE edges (
    edge_id         TEXT    PRIMARY KEY,
    boot_id         TEXT    NOT NULL,
    last_seen       INTEGER NOT NULL,
    policy_version  INTEGER NOT NULL,
    reports         INTEGER NOT NULL
);

CREATE TABLE edge_reports_seen (
    edge_id  TEXT    NOT NULL,
    boot_id  TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (edge_id, boot_id, seq)
);

CREATE TABLE action_hits (
    action_id  INTEGER NOT NULL,
    edge_id    TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (action_id, edge_id)
);
