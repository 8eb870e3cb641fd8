//! TODO(spine): api
