//! Memory management: typed addresses, physical regions, frames, the heap and
//! translation tables (the hypervisor's own map and guests' stage 2).

pub mod addr;
pub mod attrs;
pub mod frame;
pub mod heap;
pub mod hyp_map;
pub mod pgtable;
pub mod regions;
pub mod stage2;
