-- Only real tenants hold data: documents were the one tenant table whose tenant_id referenced
-- nothing (every other one references memex.tenants, directly or through its parent's
-- composite key). A document written under an id that is no tenant is refused (23503), and
-- deleting a tenant cascades to its documents.
--
-- On a live database: documents left by an earlier deleted tenant would make the key fail to
-- validate, so they are counted first and the migration stops naming them; the key is added
-- NOT VALID (no long lock) and validated after.
do $$
declare
    orphans bigint;
begin
    select count(*) into orphans
      from memex.documents as d
     where not exists (select from memex.tenants as t where t.id = d.tenant_id);
    if orphans > 0 then
        raise exception 'memex: % documents belong to no tenant (left by deleted tenants)', orphans
            using errcode = '23503'
            , hint = 'delete them as a superuser: delete from memex.documents as d where not exists '
                || '(select from memex.tenants as t where t.id = d.tenant_id); then install again';
    end if;
end
$$;

alter table memex.documents add constraint documents_tenant_id_fkey foreign key (tenant_id)
references memex.tenants (id) on delete cascade not valid;
alter table memex.documents validate constraint documents_tenant_id_fkey;
