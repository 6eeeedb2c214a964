-- Each ledger row gets a sequence number: a certificate's workflow remembers the newest one it
-- has applied, so an event written by a workflow task that never completed (its worker died
-- after the write) is still applied by the retry, and a duplicate is applied once.
ALTER TABLE activity_ledger ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX activity_ledger_seq ON activity_ledger (seq);
