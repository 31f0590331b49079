//! DAP fake server (being written).
