-- The daily "you have outstanding actions" e-mail: at most one per provider user per UK day,
-- never one per notification. Rows are the outbox a mailer sends from.
CREATE TABLE email_digests (
    login_id          text NOT NULL,
    digest_date       date NOT NULL,
    provider_firm_id  text,
    notification_ids  text[] NOT NULL,
    queued_at         timestamptz NOT NULL,
    sent_at           timestamptz,
    PRIMARY KEY (login_id, digest_date)
);
