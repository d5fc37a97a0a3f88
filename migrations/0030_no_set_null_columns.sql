-- A conversation's user and a document's folder: ON DELETE NO ACTION instead of ON DELETE SET
-- NULL (column), which Citus refuses on a key that holds the distribution column (docs/scale.md).
-- Deleting a user who still has conversations, or a folder that still holds documents, is now
-- refused (23503) instead of emptying the reference; delete_tenant removes them all together.
-- NOT VALID then VALIDATE: the check of existing rows does not block writes.
alter table memex.conversations drop constraint conversations_tenant_id_user_id_fkey;
alter table memex.conversations add constraint conversations_tenant_id_user_id_fkey
foreign key (tenant_id, user_id) references memex.users (tenant_id, id) not valid;
alter table memex.conversations validate constraint conversations_tenant_id_user_id_fkey;

alter table memex.documents drop constraint documents_tenant_id_folder_id_fkey;
alter table memex.documents add constraint documents_tenant_id_folder_id_fkey
foreign key (tenant_id, folder_id) references memex.folders (tenant_id, id) not valid;
alter table memex.documents validate constraint documents_tenant_id_folder_id_fkey;
