//! The cost model (filled below).
