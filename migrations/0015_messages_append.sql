-- upsert_messages appends a message without seq after the conversation's last one (it used to
-- take the array position, so an agent logging one turn per call overwrote the turn before)
-- and gained `replace`; its payload check takes the conversation's last seq. The old
-- signatures go (sql/ creates the new ones).
set local search_path = pg_catalog, pg_temp;

drop function if exists memex.upsert_messages(text, jsonb);
drop function if exists memex._check_messages(jsonb);
