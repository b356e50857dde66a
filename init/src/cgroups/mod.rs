//! Cgroup placement behind one small interface (filled by the cgroups work).
