//! Capabilities: the five OCI sets (filled by the capabilities work).
