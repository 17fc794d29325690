"""Surfaces: the CLI now; the HTTP server, MCP server and Slack app in later issues."""
