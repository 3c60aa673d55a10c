-- Operators (owned by src/access): member systems allowed to change the hub itself, such as
-- registering schemas and setting compatibility levels. Ordinary systems only exchange events.
ALTER TABLE member_system ADD COLUMN operator BOOLEAN NOT NULL DEFAULT false;
