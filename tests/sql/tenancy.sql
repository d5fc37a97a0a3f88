-- Naming a tenant: by name or by id (memex._tenant_named: the id first), and the errors of
-- set_tenant, create_api_token and delete_tenant when the name matches none.
select memex.create_tenant('acme') is not null as acme_created;
-- a tenant whose name is the text of another tenant's id: naming that id means the other one
select memex.create_tenant((select id::text from memex.tenants where name = 'acme')) is not null as lookalike_created;
select memex.set_tenant((select id::text from memex.tenants where name = 'acme'), false)
    = (select id from memex.tenants where name = 'acme') as the_id_wins;
select memex.set_tenant(upper((select id::text from memex.tenants where name = 'acme')), false)
    = (select id from memex.tenants where name = 'acme') as any_case;
select memex.set_tenant('acme', false) = (select id from memex.tenants where name = 'acme') as by_name;

select memex.set_tenant('');
select memex.set_tenant(null);
select memex.set_tenant('globex');
select memex.set_tenant('00000000-0000-0000-0000-000000000000');
select * from memex.create_api_token('globex');
select id is not null as issued from memex.create_api_token('acme', expires_in => '-1 day');
call memex.delete_tenant('globex', 'globex');
call memex.delete_tenant('acme');
call memex.delete_tenant('acme', 'acmee');
