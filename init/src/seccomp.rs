//! seccomp filters from `linux.seccomp` (filled by the seccomp work).
