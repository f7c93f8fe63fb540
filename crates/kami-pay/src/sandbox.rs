//! sandbox channel (being written)
