-- An event whose answer says "not finished yet" (a statement of a day not closed) can wait
-- outside its dossier's lane (owned by src/connectors): it is kept as a dead letter that is not
-- dead, parked until the time its manifest's `reply.ask_again_at` gave, and its replay is
-- requested for that time, so the replay claim takes it up by itself once it is due. Its lane
-- and its in-flight slot are free meanwhile, and the consumer's offset moves on.
ALTER TABLE connector_dead_letter ADD COLUMN parked_until TIMESTAMPTZ;
