//! TODO(spine): node
