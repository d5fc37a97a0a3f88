-- The drain engine's position, one value where four fields were carried by hand
-- (memex._drain_step, memex._claim_step, memex._reembed_pass): the old signature goes, sql/
-- creates the new one.
set local search_path = pg_catalog, pg_temp;

-- tenant: the tenant being drained (null: start from the first); (after_tokens, after): the
-- last chunk handed out, in claim order (token_count, id); wrapped: this tenant's pass has
-- restarted once from its start (claims).
create type memex.drain_position as (
    tenant uuid
    , after_tokens integer
    , after uuid
    , wrapped boolean
);

comment on type memex.drain_position is
'Where a drain over the tenants stands between two batches (memex._drain_step).';

drop function if exists memex._drain_step(integer, integer, boolean, uuid, integer, uuid, boolean, boolean);
