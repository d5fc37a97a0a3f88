-- Remote embedding endpoints: an OpenAI-compatible /v1/embeddings server (OpenAI, Ollama, vLLM,
-- TEI, Infinity) as the model of a space, `model => 'endpoint:NAME'` (memex_db.remote). Managed by
-- memex_admin; applications embed their queries through them but never see a key.

-- memex._check_endpoint_options(options): the options checked in Python, where they are used
-- (22023 for an unknown or out-of-range one).
create or replace function memex._check_endpoint_options(options jsonb)
returns jsonb
language plpython3u
immutable
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db api:check_endpoint_options(options)@
$py$;

comment on function memex._check_endpoint_options(jsonb) is
'Internal: the options of an embedding endpoint, checked (batch_size, concurrency, requests_per_minute, timeout_s, retries, dimensions).';

-- memex._loopback_url(url): whether an http(s) URL's host is this machine (localhost,
-- 127.0.0.0/8, ::1): the one place a key may travel in clear.
create or replace function memex._loopback_url(url text)
returns boolean
language sql
immutable
parallel safe
security invoker
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.lower(pg_catalog.substring(_loopback_url.url, '^https?://(\[[^]]*\]|[^/:]+)'))
           ~ '^(localhost|127(\.[0-9]{1,3}){3}|\[::1\])$'
$$;

comment on function memex._loopback_url(text) is 'Internal: whether an endpoint URL points at this machine (loopback).';

-- memex.create_endpoint(name, url, model, options, allow_insecure): registers (or, same name,
-- updates) an endpoint. url is the API base (http://host:port/v1); model the name the server
-- knows. No credentials or query string in the URL (it is readable by applications, printed in
-- errors, and /embeddings is appended to it); plain http only to loopback, unless
-- allow_insecure: the bearer key would cross the network in clear.
create or replace function memex.create_endpoint(
    name text, url text, model text, options jsonb default '{}', allow_insecure boolean default false
)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    opts jsonb := coalesce(create_endpoint.options, '{}');
begin
    if create_endpoint.name is null or create_endpoint.name !~ '^[a-z0-9][a-z0-9_-]{0,62}$' then
        raise exception 'invalid endpoint name %', coalesce(pg_catalog.quote_literal(create_endpoint.name), 'null')
            using errcode = '22023', hint = 'lower-case letters, digits, _ and - (at most 63), starting with a letter or digit';
    end if;
    if create_endpoint.url is null or create_endpoint.url !~ '^https?://[^\s/]+' or create_endpoint.url ~ '\s' then
        raise exception 'invalid endpoint url %', coalesce(pg_catalog.quote_literal(create_endpoint.url), 'null')
            using errcode = '22023', hint = 'the API base, e.g. http://127.0.0.1:7997/v1 (/embeddings is appended)';
    end if;
    if create_endpoint.url ~ '^https?://[^/]*@' then  -- not echoed: it holds a secret
        raise exception 'an endpoint url must not carry credentials (user:password@)'
            using errcode = '22023', hint = 'set the API key with memex.set_endpoint_key (docs/embedding.md)';
    end if;
    if create_endpoint.url ~ '[?#]' then
        raise exception 'an endpoint url must not carry a query string or fragment'
            using errcode = '22023', hint = 'the API base only (/embeddings is appended); a key goes through memex.set_endpoint_key';
    end if;
    if create_endpoint.url ~* '^http://' and not memex._loopback_url(create_endpoint.url)
       and not coalesce(create_endpoint.allow_insecure, false) then
        raise exception 'endpoint url % is plain http to another machine: its API key would cross the network in clear'
            , pg_catalog.quote_literal(create_endpoint.url)
            using errcode = '22023', hint = 'use https, or pass allow_insecure => true for a trusted network';
    end if;
    if create_endpoint.model is null or create_endpoint.model = '' or pg_catalog.length(create_endpoint.model) > 200 then
        raise exception 'invalid endpoint model %', coalesce(pg_catalog.quote_literal(create_endpoint.model), 'null')
            using errcode = '22023', hint = 'the model name the server knows (1 to 200 characters)';
    end if;
    if pg_catalog.jsonb_typeof(opts) <> 'object' then
        raise exception 'endpoint options must be a JSON object' using errcode = '22023';
    end if;
    opts := memex._check_endpoint_options(opts);
    insert into memex.endpoints as e (name, url, model, options)
    values (create_endpoint.name, create_endpoint.url, create_endpoint.model, opts)
    on conflict on constraint endpoints_pkey do update
       set url = excluded.url, model = excluded.model, options = excluded.options;
end
$$;

comment on function memex.create_endpoint(text, text, text, jsonb, boolean) is
'Registers or updates a remote OpenAI-compatible embedding endpoint; spaces use it as model => ''endpoint:NAME''.';

-- memex.set_endpoint_key(endpoint, api_key): keeps the key in a file of the database server
-- (mode 0600 in its data directory, so base backups and replicas carry it), never in a table: no
-- role reads it back through SQL. An empty key removes it. Without api_key, the key is taken
-- from memex.endpoint_key, set by SET LOCAL in the same transaction, and cleared: a failing
-- call then logs no key (log_min_error_statement logs a failed statement's text).
create or replace function memex.set_endpoint_key(endpoint text, api_key text default null)
returns boolean
language plpython3u
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db api:set_endpoint_key(endpoint, api_key)@
$py$;

comment on function memex.set_endpoint_key(text, text) is
'Stores (or with an empty key removes) an endpoint''s API key in a file of the database server; returns whether one is kept.';

-- memex.drop_endpoint(name): removes an endpoint that no space uses (55006 otherwise).
create or replace function memex.drop_endpoint(name text)
returns void
language plpgsql
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
    users text;
begin
    select pg_catalog.string_agg(s.name, ', ' order by s.name) into users
      from memex.spaces as s where s.model = 'endpoint:' || drop_endpoint.name;
    if users is not null then
        raise exception 'endpoint % is the model of spaces %', drop_endpoint.name, users
            using errcode = '55006', hint = 'drop_space those spaces first';
    end if;
    if not exists (select 1 from memex.endpoints as e where e.name = drop_endpoint.name) then
        raise exception 'unknown endpoint %', pg_catalog.quote_literal(drop_endpoint.name) using errcode = '22023';
    end if;
    perform memex.set_endpoint_key(drop_endpoint.name, null);
    delete from memex.endpoints as e where e.name = drop_endpoint.name;
end
$$;

comment on function memex.drop_endpoint(text) is 'Removes a remote embedding endpoint that no space uses, and its key.';
