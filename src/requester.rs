//! TODO(spine): requester
