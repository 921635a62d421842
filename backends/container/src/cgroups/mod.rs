//! cgroup v1, hybrid and v2 management (placeholder)
