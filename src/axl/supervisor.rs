//! TODO(axl helper): supervisor
