-- What the engine published carries personal data (the commands name the child, the deceased,
-- the payer): it is forgotten once relayed and past the waiting retention (the payload becomes
-- '{}'; the row stays, so the timeline still says what was published, when). This index finds
-- the rows still holding theirs.
CREATE INDEX procedure_outbox_kept ON procedure_outbox (published_at)
    WHERE published_at IS NOT NULL AND payload <> '{}'::jsonb;
