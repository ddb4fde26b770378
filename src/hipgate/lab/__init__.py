"""The lab: real Debian hosts (systemd-nspawn + network namespaces) on one machine."""
