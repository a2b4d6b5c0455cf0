-- Alert intake: which incident each Alertmanager alert group (its `groupKey`) opened.
CREATE TABLE intake_groups (
    group_key    TEXT    PRIMARY KEY,
    incident_id  BIGINT  NOT NULL REFERENCES incidents (id),
    first_at     BIGINT  NOT NULL,
    last_at      BIGINT  NOT NULL,
    updates      BIGINT  NOT NULL
);
CREATE INDEX intake_groups_incident ON intake_groups (incident_id);
