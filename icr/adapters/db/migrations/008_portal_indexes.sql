-- The provider portal lists a firm's notifications a page at a time (newest assigned first,
-- or soonest due among the open ones) and counts a user's open ones: indexed, so a firm with
-- thousands of open reviews reads its first page without scanning them all.
CREATE INDEX notifications_firm_assigned ON notifications (provider_firm_id, date_assigned DESC, notification_id);
CREATE INDEX notifications_firm_open_due ON notifications (provider_firm_id, due_date, notification_id) WHERE is_open;
