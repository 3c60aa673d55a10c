-- The residence database and the population database hold one country's residents: a citizen
-- the residence sandbox has not registered itself (every seeded citizen) is taken from the
-- population sandbox the first time it is asked about, with the province it lives in.
ALTER TABLE sandbox_residence.permanent ADD COLUMN province_code TEXT;
