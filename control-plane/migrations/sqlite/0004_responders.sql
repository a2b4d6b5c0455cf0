-- Organisation settings set through the API (the start-up flags are the defaults), links
-- of an action to further incidents, and how often each edge reports (its last report is
-- `edges.last_seen`).

CREATE TABLE org_settings (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    company_name      TEXT,
    dpo_contact       TEXT,
    security_mailbox  TEXT,
    updated_at        INTEGER NOT NULL,
    updated_by        TEXT    NOT NULL
);

CREATE TABLE action_links (
    action_id    INTEGER NOT NULL REFERENCES actions (id),
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    linked_at    INTEGER NOT NULL,
    linked_by    TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    PRIMARY KEY (action_id, incident_id)
);
CREATE INDEX action_links_incident ON action_links (incident_id);

ALTER TABLE edges ADD COLUMN report_interval_s INTEGER;
