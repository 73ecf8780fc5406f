//! The hypervisor console: a `log` backend with counter timestamps.
