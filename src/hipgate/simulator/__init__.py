"""The national platform simulator (lab only): serves hipgate's interface document over HTTPS inside the
lab's platform network, validates and verifies every request against it, keeps a ledger of what it
accepted, publishes fee-check forms, cross-province visits, anomalies and catalogue versions, and
injects faults on command through a loopback admin port.

国家平台模拟器（仅用于实验环境）。`python -m hipgate.simulator serve --config FILE`.

Modules: config (the YAML config), contract (the interface document and the signatures), ledger (SQLite
state), gate (admitting a request), transactions (what each infno does), uploads (9101-9103 and the
history files), outbox (cursor-paged downloads and acknowledgements), publish (generated content),
catalog (the catalogue versions), faults (fault injection), server (the HTTPS listener), admin (the
control API), app (wiring), __main__ (the CLI).
"""
