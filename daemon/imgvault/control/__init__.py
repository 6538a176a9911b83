"""The control socket: how `imgvaultctl daemon ...` asks the running `imgvaultd`.

A Unix stream socket carrying one JSON request line and one JSON response line per connection
(docs/control-socket.md). Who may ask is decided by the kernel's word on the caller
(SO_PEERCRED), not by anything the caller says: root may call every method, members of group
`imgvault` the read-only ones, anyone else nothing.
"""
