//! TODO(spine): jobs
