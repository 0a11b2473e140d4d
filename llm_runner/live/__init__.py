"""Livepeer live runners: the static registration (runners_json, checked with go_rules and go_url,
ports of go-livepeer's own rules), the dynamic one (registration over heartbeat_protocol), and
wiring, which feeds a registration from the runner's readiness and slots."""
