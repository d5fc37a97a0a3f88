-- Speakers and conversation signals (issue 25): a message may carry its speaker's name (as in
-- OpenAI's message format), and rag_search gains conversation_weight and recency, so its
-- signature and its helpers' change: the old ones go, sql/ creates the new ones.
set local search_path = pg_catalog, pg_temp;

alter table memex.messages add column name text;
alter table memex.messages add constraint messages_name_check
check (name is null or pg_catalog.char_length(name) between 1 and 200);

drop function if exists memex.rag_search(
    text, integer, text, jsonb, text, double precision, integer, double precision, double precision
    , double precision, text, integer, regprocedure, integer, double precision, double precision, text
);
-- _search takes a pgvector type, in whatever schema the extension lives: dropped by its name.
do $$
declare
    f regprocedure;
begin
    for f in select p.oid::regprocedure from pg_catalog.pg_proc as p
              where p.pronamespace = 'memex'::regnamespace and p.proname = '_search' loop
        execute pg_catalog.format('drop function %s', f);
    end loop;
end
$$;
drop function if exists memex._check_search_args(
    text, boolean, integer, text, integer, text, double precision, double precision, double precision
    , integer, regprocedure, integer, double precision, double precision
);
