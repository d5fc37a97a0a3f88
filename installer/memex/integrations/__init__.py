"""memex inside the frameworks people already use (docs/integrations.md). Each module needs
its extra: `memex[langchain]`, `memex[langgraph]`, `memex[llamaindex]`."""
