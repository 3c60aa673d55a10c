-- Systems allowed to ask for citizens' "who used my data" reports (the national portal, issue
-- 20) without being operators, who may change the hub itself. The audit trigger on
-- member_system (V20) records who was allowed, and when.
ALTER TABLE member_system ADD COLUMN citizen_reports BOOLEAN NOT NULL DEFAULT false;
