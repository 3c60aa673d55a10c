-- The event that did each step (src/procedures/instance.rs): a compensation names it as the one
-- it undoes (death.residence-deletion-revert-requested's reverts_event_id). Steps done before
-- this migration have none; their compensation is set aside, visibly, rather than guessed.
ALTER TABLE procedure_step ADD COLUMN done_event UUID;

-- A step being undone has a due time too: the deadline watch looks for it.
DROP INDEX procedure_step_due;
CREATE INDEX procedure_step_due ON procedure_step (due_at)
    WHERE state IN ('running', 'failed', 'undoing') AND overdue_at IS NULL;
