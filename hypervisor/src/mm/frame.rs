//! The physical frame allocator.
