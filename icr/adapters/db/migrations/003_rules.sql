-- The contact each certificate was last imported with, so that re-importing the same registry
-- file does not undo a reassignment made in the engine: an import changes the provider contact
-- only when it names a contact different from this one. NULL (rows written before this
-- column): the current contact.
ALTER TABLE certificates ADD COLUMN imported_contact_login text;
UPDATE certificates SET imported_contact_login = provider_contact_login;

-- Certificates closed while not registered (a caseworker closed a registration_missing task):
-- they have no row in certificates, whose registration columns are required, yet the registry
-- must keep them closed, so that a later event or import never restarts their review.
CREATE TABLE closed_certificates (
    case_reference  text PRIMARY KEY CHECK (case_reference ~ '^3000[0-9]{8}$'),
    closed_at       timestamptz NOT NULL,
    closed_reason   text NOT NULL,
    closed_by       text NOT NULL
);
