//! Shared helpers for the example programs and end-to-end tests of the
//! bulk-data client family. Nothing here is published.
