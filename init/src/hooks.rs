//! OCI hooks (filled by the hooks work).
