//! TODO(spine): protocol
