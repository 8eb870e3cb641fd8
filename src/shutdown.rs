//! TODO(spine): shutdown
