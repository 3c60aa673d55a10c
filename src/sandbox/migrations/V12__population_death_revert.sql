-- A death recorded under a registration since annulled is reverted: the citizen is living again
-- in the population database. The revert is kept (when, under which registration), so a repeat
-- of it gets the same answer.
ALTER TABLE sandbox_population.citizen
    ADD COLUMN death_reverted_at        TIMESTAMPTZ,
    ADD COLUMN death_reverted_reference TEXT;
