-- Sending the daily digest (issue 15): where mail goes, and each outbox row's delivery record.
-- Append-only, like every migration; 003 is another change's and neither depends on the other.

-- Optional: a provider user without an address gets no e-mail, and each digest run reports them.
ALTER TABLE users ADD COLUMN email text CHECK (char_length(email) <= 254);

-- The delivery columns record when the machine did it, on the database's clock (the one clock
-- every worker shares, so a claim's lease means the same to all of them); the digest date and
-- the audit log keep the workflow's business time.
ALTER TABLE email_digests
    -- Fixed by the first attempt, so that a re-send is the same message to the same address.
    ADD COLUMN recipient      text,
    ADD COLUMN message_id     text,
    ADD COLUMN earliest_due   timestamptz,
    ADD COLUMN attempts       integer NOT NULL DEFAULT 0,
    -- Held while one sender is sending; a claim older than the lease may be taken over.
    ADD COLUMN claimed_at     timestamptz,
    -- The digest run (workflow run id) that holds, or last held, the claim.
    ADD COLUMN claimed_by     text,
    -- The SMTP server's answer to the accepted message.
    ADD COLUMN smtp_response  text,
    -- Why the last attempt did not send (kept after a later success, as history).
    ADD COLUMN last_error     text,
    -- Failed for good (a 5xx answer, an address that cannot be used, or its day passed): never retried.
    ADD COLUMN failed_at      timestamptz;

CREATE INDEX email_digests_unsent ON email_digests (digest_date) WHERE sent_at IS NULL AND failed_at IS NULL;
