//! Region arithmetic over physical memory.
