//! ld fake server (being written).
