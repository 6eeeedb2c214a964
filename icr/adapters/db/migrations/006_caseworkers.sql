-- The LAA caseworkers the engine knows: a decision is taken only under a name listed here
-- and active. Loaded by `starter.py import caseworkers FILE`.
CREATE TABLE caseworkers (
    caseworker_id  text PRIMARY KEY CHECK (caseworker_id ~ '^[^[:space:][:cntrl:]]{1,100}$'),
    active         boolean NOT NULL,
    updated_at     timestamptz NOT NULL
);
