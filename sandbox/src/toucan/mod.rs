//! toucan fake server (being written).
