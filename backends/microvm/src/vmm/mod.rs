//! hako's own VMM on KVM (placeholder)
