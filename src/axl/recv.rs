//! TODO(axl helper): recv
