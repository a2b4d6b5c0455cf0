-- Alert intake: which incident each Alertmanager alert group (its `groupKey`) opened.
CREATE TABLE intake_groups (
    group_key    TEXT    PRIMARY KEY,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    first_at     INTEGER NOT NULL,
    last_at      INTEGER NOT NULL,
    updates      INTEGER NOT NULL
);
CREATE INDEX intake_groups_incident ON intake_groups (incident_id);
