-- The Inactive Case Review registry and records. Append-only: later changes go in 002_*.sql.

CREATE TABLE users (
    login_id          text PRIMARY KEY,
    provider_firm_id  text NOT NULL CHECK (provider_firm_id ~ '^[0-9]+$'),
    roles             text[] NOT NULL DEFAULT '{}',
    pre_silas         boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_firm ON users (provider_firm_id);

CREATE TABLE certificates (
    case_reference          text PRIMARY KEY CHECK (case_reference ~ '^3000[0-9]{8}$'),
    provider_firm_id        text NOT NULL CHECK (provider_firm_id ~ '^[0-9]+$'),
    office_code             text NOT NULL,
    provider_contact_login  text NOT NULL,
    granted_on              date NOT NULL,
    last_activity_at        timestamptz,
    poa_paid                numeric(14, 2) NOT NULL DEFAULT 0 CHECK (poa_paid >= 0),
    poa_recouped            numeric(14, 2) NOT NULL DEFAULT 0 CHECK (poa_recouped >= 0),
    closed_at               timestamptz,
    closed_reason           text,
    registered_at           timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (poa_recouped <= poa_paid)
);
CREATE INDEX certificates_firm ON certificates (provider_firm_id);

-- Every qualifying event received, whether or not it moved a deadline. No foreign key:
-- events for a certificate not yet registered are kept too.
CREATE TABLE activity_ledger (
    case_reference  text NOT NULL,
    event_id        text NOT NULL,
    kind            text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    source          text,
    received_at     timestamptz NOT NULL,
    PRIMARY KEY (case_reference, event_id)
);
CREATE INDEX activity_ledger_latest ON activity_ledger (case_reference, occurred_at DESC);

-- Shaped like a CCMS action.
CREATE TABLE notifications (
    notification_id      text PRIMARY KEY,
    case_reference       text NOT NULL,
    provider_firm_id     text,
    assigned_to          text,
    subject              text NOT NULL,
    cycle                integer NOT NULL,
    date_assigned        timestamptz NOT NULL,
    due_date             timestamptz NOT NULL,
    return_date          timestamptz NOT NULL,
    status               text NOT NULL,
    is_open              boolean NOT NULL DEFAULT true,
    available_responses  text[] NOT NULL,
    letter               text NOT NULL,
    response             text,
    message              text CHECK (char_length(message) <= 2000),
    responded_by         text,
    responded_at         timestamptz,
    closed_at            timestamptz
);
CREATE INDEX notifications_case ON notifications (case_reference);
CREATE INDEX notifications_open_by_user ON notifications (assigned_to) WHERE is_open;
-- At most one open notification per certificate, whatever retries.
CREATE UNIQUE INDEX notifications_one_open ON notifications (case_reference) WHERE is_open;

CREATE TABLE laa_tasks (
    task_id          text PRIMARY KEY,
    case_reference   text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('review', 'no_response', 'escalation',
                                                   'follow_up', 'registration_missing')),
    notification_id  text,
    response         text,
    detail           text NOT NULL,
    raised_at        timestamptz NOT NULL,
    is_open          boolean NOT NULL DEFAULT true,
    decision         text CHECK (decision IN ('close', 'keep_open')),
    decided_by       text,
    decision_reason  text,
    decided_at       timestamptz
);
CREATE INDEX laa_tasks_open ON laa_tasks (kind, raised_at) WHERE is_open;
CREATE INDEX laa_tasks_case ON laa_tasks (case_reference);

CREATE TABLE recoupments (
    recoupment_id   text PRIMARY KEY,
    case_reference  text NOT NULL REFERENCES certificates (case_reference),
    amount          numeric(14, 2) NOT NULL CHECK (amount > 0),
    recouped_at     timestamptz NOT NULL,
    reason          text NOT NULL,
    actor           text NOT NULL
);
CREATE INDEX recoupments_case ON recoupments (case_reference);

CREATE TABLE policy_versions (
    version                integer PRIMARY KEY,
    inactivity_days        integer NOT NULL CHECK (inactivity_days > 0),
    response_due           interval NOT NULL DEFAULT interval '14 days' CHECK (response_due > interval '0'),
    return_after           interval NOT NULL DEFAULT interval '21 days',
    max_unanswered_cycles  integer NOT NULL DEFAULT 3 CHECK (max_unanswered_cycles > 0),
    effective_from         timestamptz NOT NULL,
    created_by             text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    note                   text NOT NULL DEFAULT '',
    CHECK (return_after > response_due)
);
INSERT INTO policy_versions (version, inactivity_days, effective_from, created_by, note) VALUES
    (1, 365, '2000-01-01T00:00:00Z', 'migration',
     'no activity for 12 months'),
    (2, 608, '2026-05-17T00:00:00+01:00', 'migration',
     'after the 2026 CCMS outage: 20 months from 17 May 2026');

CREATE TABLE exercise_responses (
    case_reference  text PRIMARY KEY CHECK (case_reference ~ '^3000[0-9]{8}$'),
    response        text NOT NULL CHECK (response IN ('case_ongoing', 'complete_to_be_billed',
                         'complete_costs_negotiated', 'complete_court_assessment',
                         'complete_no_bill_due')),
    reported_on     date NOT NULL,
    imported_at     timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    claim_key       text
);

-- Who did what and when. The idempotency key makes a retried step audit once.
CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    case_reference   text,
    actor            text NOT NULL,
    action           text NOT NULL,
    detail           jsonb NOT NULL DEFAULT '{}',
    at               timestamptz NOT NULL
);
CREATE INDEX audit_log_case ON audit_log (case_reference, at);
