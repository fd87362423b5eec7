//! The one-machine demo (being written).
