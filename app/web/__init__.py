"""The web UI: server-rendered pages at /ui over the API's services (docs/ui.md)."""
