//! TODO(spine): config
