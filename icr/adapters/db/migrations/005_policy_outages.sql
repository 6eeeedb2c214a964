-- Declared outages, and roll-outs: telling every open certificate about a new policy version
-- or outage, at a rate, resumable.

-- A CCMS outage window declared by ops: response deadlines overlapping it are extended.
CREATE TABLE outages (
    outage_id    integer PRIMARY KEY,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text NOT NULL CHECK (reason <> ''),
    declared_by  text NOT NULL CHECK (declared_by <> ''),
    declared_at  timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX outages_ends ON outages (ends_at);

-- An open notification's due date and return date moved by outages: which, and by how much.
ALTER TABLE notifications ADD COLUMN extensions jsonb NOT NULL DEFAULT '[]';

CREATE TABLE rollouts (
    rollout_id   integer PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('policy', 'outage')),
    subject      integer NOT NULL,  -- the policy version or the outage id
    started_by   text NOT NULL,
    reason       text NOT NULL,
    started_at   timestamptz NOT NULL,
    rate         double precision NOT NULL CHECK (rate > 0),
    total        integer NOT NULL DEFAULT 0,
    done         integer NOT NULL DEFAULT 0,
    not_running  integer NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'interrupted', 'finished', 'superseded')),
    updated_at   timestamptz NOT NULL,
    finished_at  timestamptz
);

-- The certificates a roll-out is to reach, taken from the registry and the ledger, in the
-- order it reaches them (oldest clock, so oldest deadline, first); `reached_at` is set once
-- each is told, so a resumed roll-out tells only the others.
CREATE TABLE rollout_targets (
    rollout_id      integer NOT NULL REFERENCES rollouts (rollout_id),
    case_reference  text NOT NULL,
    clock_from      timestamptz NOT NULL,
    reached_at      timestamptz,
    running         boolean,  -- false: no review was running to tell
    PRIMARY KEY (rollout_id, case_reference)
);
CREATE INDEX rollout_targets_next ON rollout_targets (rollout_id, clock_from, case_reference)
    WHERE reached_at IS NULL;

-- Where a certificate's clock runs from includes a caseworker's latest keep-open decision.
CREATE INDEX laa_tasks_kept_open ON laa_tasks (case_reference, decided_at) WHERE decision = 'keep_open';
