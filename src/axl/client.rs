//! TODO(axl helper): client
