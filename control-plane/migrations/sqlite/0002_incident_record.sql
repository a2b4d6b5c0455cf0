-- The incident record (issue #6): response-policy facts, notifications, post-mortems,
-- access-log evidence, time-bucketed timeline entries and retention guards.

-- Facts the policy clock and the documents need.
ALTER TABLE incidents ADD COLUMN health_data INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN aware_at INTEGER;          -- became aware of a personal-data breach
ALTER TABLE incidents ADD COLUMN resolved_at INTEGER;       -- entered post_incident (or closed)
ALTER TABLE incidents ADD COLUMN next_update_at INTEGER;
ALTER TABLE incidents ADD COLUMN facts TEXT NOT NULL DEFAULT '{}';  -- JSON: impact, indicators, GDPR facts

-- Incidents already past containment count as resolved when they were last updated.
UPDATE incidents SET resolved_at = updated_at WHERE phase IN ('post_incident', 'closed');
UPDATE incidents SET aware_at = reported_at WHERE personal_data = 1;

-- Timeline entries that aggregate many events (edge hits, evidence) per time bucket.
ALTER TABLE timeline ADD COLUMN bucket INTEGER;
CREATE UNIQUE INDEX timeline_bucket ON timeline (incident_id, kind, bucket) WHERE bucket IS NOT NULL;
CREATE INDEX timeline_at ON timeline (incident_id, at, id);

CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    audience     TEXT    NOT NULL,      -- authority | customers | staff
    kind         TEXT    NOT NULL,      -- notification | preliminary_report | internal_alert | hipaa_notice
    notified_at  INTEGER NOT NULL,
    notified_by  TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    reference    TEXT,
    note         TEXT,
    facts        TEXT,                  -- JSON: what the recipient was told (authority, customers)
    recorded_at  INTEGER NOT NULL,
    recorded_by  TEXT    NOT NULL
);
CREATE INDEX notifications_incident ON notifications (incident_id, id);

CREATE TABLE postmortems (
    incident_id      INTEGER PRIMARY KEY REFERENCES incidents (id),
    lessons_learned  TEXT    NOT NULL,
    root_cause       TEXT    NOT NULL,
    attack_vectors   TEXT    NOT NULL,  -- JSON array of strings
    data_impact      TEXT    NOT NULL,
    follow_ups       TEXT    NOT NULL,  -- JSON array of {item, owner, due_at}
    policy_changes   TEXT    NOT NULL,
    submitted_at     INTEGER NOT NULL,
    submitted_by     TEXT    NOT NULL,
    updated_at       INTEGER NOT NULL,
    updated_by       TEXT    NOT NULL
);

CREATE TABLE evidence (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    action_id    INTEGER,               -- the containment action it is attributed to, if any
    matched      TEXT    NOT NULL,      -- JSON array of reasons
    line_hash    TEXT    NOT NULL,      -- SHA-256 of the line as received (trimmed)
    batch_id     TEXT    NOT NULL,
    edge_id      TEXT,
    at           INTEGER NOT NULL,      -- the line's start_time
    client_ip    TEXT,
    method       TEXT,
    host         TEXT,
    path         TEXT,
    status       INTEGER,
    user_agent   TEXT,
    line         TEXT    NOT NULL,
    ingested_at  INTEGER NOT NULL,
    ingested_by  TEXT    NOT NULL,
    UNIQUE (incident_id, line_hash)
);
CREATE INDEX evidence_incident ON evidence (incident_id, at, id);

-- Deltas older than the last purge are answered with a snapshot (purged actions are gone
-- from policy_changes).
ALTER TABLE policy_state ADD COLUMN min_delta_since INTEGER NOT NULL DEFAULT 0;

-- Retention: records are kept at least 5 years after the incident closed. Whatever issues
-- the DELETE (API, CLI, a hand-written query), the database refuses a younger record.
CREATE TRIGGER incidents_retention BEFORE DELETE ON incidents
WHEN NOT (OLD.phase = 'closed' AND OLD.closed_at IS NOT NULL
          AND OLD.closed_at < CAST(strftime('%s', 'now', '-5 years') AS INTEGER) * 1000)
BEGIN SELECT RAISE(ABORT, 'retention: incident records are kept 5 years after closing'); END;

CREATE TRIGGER timeline_retention BEFORE DELETE ON timeline
WHEN NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = OLD.incident_id AND i.phase = 'closed'
                 AND i.closed_at < CAST(strftime('%s', 'now', '-5 years') AS INTEGER) * 1000)
BEGIN SELECT RAISE(ABORT, 'retention: incident records are kept 5 years after closing'); END;

CREATE TRIGGER actions_retention BEFORE DELETE ON actions
WHEN NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = OLD.incident_id AND i.phase = 'closed'
                 AND i.closed_at < CAST(strftime('%s', 'now', '-5 years') AS INTEGER) * 1000)
BEGIN SELECT RAISE(ABORT, 'retention: incident records are kept 5 years after closing'); END;

CREATE TRIGGER notifications_retention BEFORE DELETE ON notifications
WHEN NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = OLD.incident_id AND i.phase = 'closed'
                 AND i.closed_at < CAST(strftime('%s', 'now', '-5 years') AS INTEGER) * 1000)
BEGIN SELECT RAISE(ABORT, 'retention: incident records are kept 5 years after closing'); END;

CREATE TRIGGER postmortems_retention BEFORE DELETE ON postmortems
WHEN NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = OLD.incident_id AND i.phase = 'closed'
                 AND i.closed_at < CAST(strftime('%s', 'now', '-5 years') AS INTEGER) * 1000)
BEGIN SELECT RAISE(ABORT, 'retention: incident records are kept 5 years after closing'); END;

CREATE TRIGGER evidence_retention BEFORE DELETE ON evidence
WHEN NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = OLD.incident_id AND i.phase = 'closed'
                 AND i.closed_at < CAST(strftime('%s', 'now', '-5 years') AS INTEGER) * 1000)
BEGIN SELECT RAISE(ABORT, 'retention: incident records are kept 5 years after closing'); END;

CREATE TRIGGER policy_changes_retention BEFORE DELETE ON policy_changes
WHEN NOT EXISTS (SELECT 1 FROM actions a JOIN incidents i ON i.id = a.incident_id
                 WHERE a.id = OLD.action_id AND i.phase = 'closed'
                 AND i.closed_at < CAST(strftime('%s', 'now', '-5 years') AS INTEGER) * 1000)
BEGIN SELECT RAISE(ABORT, 'retention: incident records are kept 5 years after closing'); END;

CREATE TRIGGER action_hits_retention BEFORE DELETE ON action_hits
WHEN NOT EXISTS (SELECT 1 FROM actions a JOIN incidents i ON i.id = a.incident_id
                 WHERE a.id = OLD.action_id AND i.phase = 'closed'
                 AND i.closed_at < CAST(strftime('%s', 'now', '-5 years') AS INTEGER) * 1000)
BEGIN SELECT RAISE(ABORT, 'retention: incident records are kept 5 years after closing'); END;
