"""Source-code files, one list: `memex ingest` reads files with these extensions as text, and
the database marks a document with such a uri as code (memex._document_domain, whose pattern
the installer renders from this list), so a code space embeds its chunks."""

from __future__ import annotations

# extension -> the MIME type ingest records (metadata.mime)
CODE_FILES: dict[str, str] = {
    ".py": "text/x-python", ".pyi": "text/x-python", ".js": "text/javascript",
    ".jsx": "text/javascript", ".mjs": "text/javascript", ".cjs": "text/javascript",
    ".ts": "text/x-typescript", ".tsx": "text/x-typescript", ".go": "text/x-go",
    ".rs": "text/x-rust", ".java": "text/x-java", ".kt": "text/x-kotlin", ".kts": "text/x-kotlin",
    ".scala": "text/x-scala", ".c": "text/x-c", ".h": "text/x-c", ".cc": "text/x-c++",
    ".cpp": "text/x-c++", ".cxx": "text/x-c++", ".hpp": "text/x-c++", ".hh": "text/x-c++",
    ".cs": "text/x-csharp", ".rb": "text/x-ruby", ".php": "text/x-php",
    ".swift": "text/x-swift", ".m": "text/x-objcsrc", ".mm": "text/x-objcsrc",
    ".sh": "text/x-shellscript", ".bash": "text/x-shellscript", ".zsh": "text/x-shellscript",
    ".ps1": "text/x-powershell", ".sql": "text/x-sql", ".r": "text/x-r", ".jl": "text/x-julia",
    ".lua": "text/x-lua", ".pl": "text/x-perl", ".pm": "text/x-perl", ".hs": "text/x-haskell",
    ".ex": "text/x-elixir", ".exs": "text/x-elixir", ".erl": "text/x-erlang",
    ".clj": "text/x-clojure", ".dart": "text/x-dart", ".vue": "text/x-vue",
    ".svelte": "text/x-svelte", ".css": "text/css", ".scss": "text/x-scss",
    ".proto": "text/x-protobuf", ".tf": "text/x-terraform", ".cmake": "text/x-cmake",
    ".gradle": "text/x-gradle", ".toml": "application/toml", ".yaml": "application/yaml",
    ".yml": "application/yaml", ".ini": "text/x-ini", ".cfg": "text/x-ini",
    ".dockerfile": "text/x-dockerfile", ".makefile": "text/x-makefile",
}  # fmt: skip


def uri_pattern() -> str:
    """A POSIX regular expression (case-insensitive in SQL: ~*) for a uri of a code file."""
    return r"\.(" + "|".join(sorted(suffix[1:] for suffix in CODE_FILES)) + ")$"
