-- Row-level security policies, re-applied on every install (RLS itself is enabled and FORCED in
-- the migrations). Every tenant table: a row is visible and writable only when its tenant_id is
-- the transaction's tenant. current_tenant() is null when unset or '', and `x = null` is never
-- true: no tenant means zero rows and every write refused. `(select ...)` evaluates it once per
-- statement instead of once per row.

drop policy if exists tenant_isolation on memex.users;
create policy tenant_isolation on memex.users
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.folders;
create policy tenant_isolation on memex.folders
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.conversations;
create policy tenant_isolation on memex.conversations
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.messages;
create policy tenant_isolation on memex.messages
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.summaries;
create policy tenant_isolation on memex.summaries
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.documents;
create policy tenant_isolation on memex.documents
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.chunks;
create policy tenant_isolation on memex.chunks
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.embeddings;
create policy tenant_isolation on memex.embeddings
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.text_postings;
create policy tenant_isolation on memex.text_postings
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

drop policy if exists tenant_isolation on memex.text_segments;
create policy tenant_isolation on memex.text_segments
for all to memex_app, memex_admin
using (tenant_id = (select memex.current_tenant()))
with check (tenant_id = (select memex.current_tenant()));

-- tenants: an application sees only its current tenant's row and changes none.
drop policy if exists tenant_self on memex.tenants;
create policy tenant_self on memex.tenants
for select to memex_app
using (id = (select memex.current_tenant()));

-- memex_admin manages tenants (create_tenant) and, for maintenance that spans tenants, lists
-- them to act for each in turn (set_tenant inside the job): it reads content only through the
-- same tenant_isolation policies as applications.
drop policy if exists tenant_admin on memex.tenants;
create policy tenant_admin on memex.tenants
for all to memex_admin
using (true)
with check (true);

-- memex_owner reads tenants for memex.set_tenant (SECURITY DEFINER, owned by memex_owner).
drop policy if exists tenant_owner on memex.tenants;
create policy tenant_owner on memex.tenants
for select to memex_owner
using (true);
