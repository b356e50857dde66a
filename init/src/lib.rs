//! berth-init: everything done inside the new namespaces, up to execve.
