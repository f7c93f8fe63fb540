//! epay gateway simulator: being written.
