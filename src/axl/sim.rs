//! TODO(axl helper): sim
