//! bds fake server (being written).
