//! Guest stage-2 translation.
