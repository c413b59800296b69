"""Locust load for the MCP gateway: session users, live cleanup statistics, a "DB pool" tab, load shapes.

Run on its own against a gateway: ``locust -f locustfiles/mcp_sessions.py --host http://127.0.0.1:8000``.
"""
