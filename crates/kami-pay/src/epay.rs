//! epay: being written.
