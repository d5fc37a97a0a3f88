-- Chunk domains (docs/embedding.md, "Domains"): a chunk is text or code; a space of domain code
-- embeds the code chunks only, a text space every chunk.
alter table memex.chunks add column domain text not null default 'text'
check (domain in ('text', 'code'));

-- Documents that are source files by their uri's extension (the list memex._document_domain
-- keeps, as of this migration) or say so in their metadata; fenced blocks in markdown are cut
-- out at their next change.
update memex.chunks as c
set domain = 'code'
from memex.documents as d
where
    d.tenant_id = c.tenant_id and d.id = c.document_id
    and (
        d.metadata ->> 'domain' = 'code'
        or (
            coalesce(d.metadata ->> 'domain', '') <> 'text'
            and d.uri ~* (
                '\.(py|pyi|js|jsx|mjs|cjs|ts|tsx|go|rs|java|kt|kts|scala|c|h|cc|cpp|cxx|hpp|hh|cs|rb|php|swift'
                || '|m|mm|sh|bash|zsh|ps1|sql|r|jl|lua|pl|pm|hs|ex|exs|erl|clj|dart|vue|svelte|css|scss|proto|tf'
                || '|cmake|gradle|toml|ya?ml|ini|cfg|dockerfile|makefile)$'
            )
        )
    );

-- Signatures that change: _replace_chunks takes the source's domain, rag_search a domain, and
-- the chunk count of a space counts its domain's chunks. An overload beside the old ones
-- would make calls ambiguous.
drop function if exists memex._replace_chunks(text, uuid, uuid, text, regconfig, text);
drop function if exists memex._chunks_here();
drop function if exists memex.rag_search(
    text, integer, text, jsonb, text, double precision, integer, double precision, double precision
    , double precision, text, integer, regprocedure, integer, double precision, double precision
);
