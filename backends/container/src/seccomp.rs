//! OCI seccomp profiles compiled with seccompiler (placeholder)
