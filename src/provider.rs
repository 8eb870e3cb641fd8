//! TODO(spine): provider
