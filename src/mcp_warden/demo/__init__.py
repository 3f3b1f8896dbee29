"""`mcp-warden demo` and what it runs: the flow, the stub upstream, the process harness.

flow     the `demo` command: every step an operator takes, offline, in a throwaway directory
stub     a Scavio-compatible upstream on 127.0.0.1 (`python -m mcp_warden.demo.stub`)
harness  free ports, background processes, ready lines, the stub's keys and control, the
         MCP client: shared with tests/support, since the installed demo cannot import tests
"""
